"""Template filters for the connection vocabulary (docs/pages.md, Glossary)."""

from django import template

from pages.presenters.phrases import plain as plain_message

register = template.Library()


@register.filter
def plain(message: str) -> str:
    """A stored message without protocol codes ("(invalid_grant)"), for people."""
    return plain_message(message)


@register.filter
def sentence(text: str) -> str:
    """A message as one sentence: exactly one full stop at its end ("(HTTP 503)." stays as it is,
    "(HTTP 503)" gains one), so an email never reads "(HTTP 503).)."."""
    text = (text or "").strip()
    return text if not text or text[-1] in ".!?" else f"{text}."


@register.simple_tag
def live_poll_seconds() -> float:
    """How often a live page asks for changes while its event stream is down (live.js)."""
    from django.conf import settings

    return float(getattr(settings, "LIVE_POLL_SECONDS", 5))
