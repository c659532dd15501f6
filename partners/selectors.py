"""Reads of partner apps for the hosted connect pages (partners/views.py), so the views only
parse the request, call these and render."""

from __future__ import annotations

from partners.models import PartnerApp


def partner_app_brand_colour(app_id) -> str:
    """The app's brand colour for its stylesheet; "" for an unknown app or one without a colour."""
    app = PartnerApp.objects.filter(pk=app_id).first()
    return app.brand_colour if app and app.brand_colour else ""
