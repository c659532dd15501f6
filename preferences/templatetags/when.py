"""{% when moment %}: "5 minutes ago", with the labelled local time on hover and keyboard focus
(and always to screen readers). {% when moment "absolute" %}: the labelled local time only."""

from __future__ import annotations

from django import template
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html

register = template.Library()

ABSOLUTE = "Y-m-d H:i T"


def absolute_text(moment) -> str:
    return date_format(timezone.localtime(moment), ABSOLUTE)


@register.simple_tag
def when(moment, mode: str = "relative"):
    if moment is None:
        return "—"
    iso = moment.isoformat()
    absolute = absolute_text(moment)
    if mode == "absolute":
        return format_html('<time class="when" datetime="{}">{}</time>', iso, absolute)
    return format_html(
        '<time class="when when--relative" datetime="{}" tabindex="0">'
        '<span class="when__rel">{}</span><span class="when__abs"> ({})</span></time>',
        iso,
        naturaltime(moment),
        absolute,
    )
