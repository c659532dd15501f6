"""Review of issue 28 (connect sessions): what an attacker or a careless caller tries, each a
test that failed before its fix (or pins a rule the review checked)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from partners.admin import PartnerAppForm
from partners.services import (
    connect_session_create,
    partner_app_create,
)
from tests.partners.support import RETURN

# --- the logo and return URLs obey the one URL policy ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "logo_url",
    [
        "http://cdn.tracker.example/logo.png",
        "https://user:pw@cdn.tracker.example/logo.png",
        "https://10.0.0.5/logo.png",
        "ftp://cdn.tracker.example/logo.png",
    ],
)
def test_a_logo_url_outside_the_url_policy_is_refused(settings, logo_url):
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = False  # production
    with pytest.raises(ValidationError):
        partner_app_create(name="Tracker", logo_url=logo_url)
    form = PartnerAppForm(data={"name": "Tracker", "logo_url": logo_url, "return_urls": RETURN})
    assert not form.is_valid() and "logo_url" in form.errors


@pytest.mark.django_db
@pytest.mark.parametrize(
    "return_url",
    [
        "javascript:alert(document.cookie)//",
        "data:text/html,<script>alert(1)</script>",
        "http://tracker.example/done",
        "ftp://tracker.example/done",
        "https://user:pw@tracker.example/done",
        "//tracker.example/done",
    ],
)
def test_a_return_url_outside_the_url_policy_is_refused(settings, return_url):
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = False  # production
    with pytest.raises(ValidationError):
        partner_app_create(name="Tracker", return_urls=[return_url])
    form = PartnerAppForm(data={"name": "Tracker", "return_urls": return_url})
    assert not form.is_valid() and "return_urls" in form.errors


@pytest.mark.django_db
def test_loopback_http_return_urls_only_in_development(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = True
    assert partner_app_create(name="Dev", return_urls=["http://127.0.0.1:8001/done"]).return_urls
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = False
    with pytest.raises(ValidationError):
        partner_app_create(name="Prod", return_urls=["http://127.0.0.1:8001/done"])


@pytest.mark.django_db
def test_the_logo_relaxes_img_src_only_for_its_origin_and_only_on_hosted_pages(client, sandbox_app):
    tracker = partner_app_create(name="Tracker", logo_url="https://cdn.tracker.example:8443/brand/logo.png")
    _s, url = connect_session_create(app=tracker, end_user={"id": "u-1"})
    client.get("/" + url.split("://", 1)[1].split("/", 1)[1])
    page = client.get("/connect/")
    csp = page["Content-Security-Policy"]
    img_src = next(d for d in csp.split(";") if d.strip().startswith("img-src")).split()
    assert img_src[1:] == ["'self'", "https://cdn.tracker.example:8443"]
    assert "frame-ancestors 'none'" in csp  # still never framed
    assert page["X-Frame-Options"] == "DENY"
    assert "cdn.tracker.example" not in client.get("/accounts/login/")["Content-Security-Policy"]


