"""Template filters for the connection vocabulary (docs/pages.md, Glossary)."""

from django import template

from connections.presenters import plain as plain_message

register = template.Library()


@register.filter
def plain(message: str) -> str:
    """A stored message without protocol codes ("(invalid_grant)"), for people."""
    return plain_message(message)
