"""Template filters for the connection vocabulary (docs/pages.md, Glossary)."""

from django import template

from connections.presenters import plain as plain_message

register = template.Library()


@register.filter
def plain(message: str) -> str:
    """A stored message without protocol codes ("(invalid_grant)"), for people."""
    return plain_message(message)


@register.simple_tag
def live_poll_seconds() -> float:
    """How often a live page asks for changes while its event stream is down (live.js)."""
    from django.conf import settings

    return float(getattr(settings, "LIVE_POLL_SECONDS", 5))
