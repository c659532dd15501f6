from django import template

register = template.Library()


@register.simple_tag
def open_alerts():
    """The open alerts, for pages that show them without their view knowing (system status)."""
    from ops.alerts import alerts_open

    return list(alerts_open())
