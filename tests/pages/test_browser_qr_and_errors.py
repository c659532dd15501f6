"""In Chromium under the real CSP (issue 27): the authenticator app's QR code renders, and the
error pages are styled with a way back."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.pages.test_browser import PASSWORD, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class Console:
    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))


def test_the_authenticator_qr_code_shows(stack, user, page):
    console = Console(page)
    user.is_staff = True
    user.save()
    sign_in(page, stack, user.email)
    page.goto(f"{stack.url}/accounts/2fa/totp/activate/")
    if page.get_by_role("heading", name="Confirm Access").count():  # allauth asks for the password again
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Confirm").click()
        page.wait_for_url("**/2fa/totp/activate/")
    qr = page.locator("#totp-qr svg")
    expect(qr).to_be_visible()
    box = qr.bounding_box()
    assert box["width"] >= 150 and box["height"] >= 150
    # Drawn: the QR's modules are a path with area, dark on the white quiet zone.
    assert page.evaluate("() => document.querySelector('#totp-qr svg path').getBBox().width") > 0
    assert page.evaluate("() => getComputedStyle(document.getElementById('totp-qr')).backgroundColor") == (
        "rgb(255, 255, 255)"
    )
    assert page.locator("img[src^='data:']").count() == 0
    assert console.errors == []


def test_error_pages_are_styled_with_a_way_back(stack, user, page):
    console = Console(page)
    sign_in(page, stack, user.email)
    for path, heading, status in [
        ("/connections/system/", "This page is not open to your account", 403),
        ("/sandbox/control/", "This page is not open to your account", 403),
        ("/no/such/page/", "Page not found", 404),
    ]:
        response = page.goto(f"{stack.url}{path}")
        assert response.status == status
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        card = page.locator(".error-page")
        # The stylesheet applied (the CSP allows it): a card with rounded corners, centred.
        assert page.evaluate("() => getComputedStyle(document.querySelector('.error-page')).borderTopLeftRadius") != (
            "0px"
        )
        card.get_by_role("link", name="Back to My connections").click()
        page.wait_for_url(f"{stack.url}/connections/")
    assert [e for e in console.errors if "404" not in e and "403" not in e] == []


def test_admin_connection_list_fits_1280_px_and_names_notification_settings(stack, user, chromium, django_user_model):
    from django.utils import timezone

    from connections.models import Connection, ConnectionStatus
    from tests.support import pass_second_factor, with_second_factor

    for i, status in enumerate([ConnectionStatus.NEEDS_REAUTH, ConnectionStatus.BROKER_OUTAGE]):
        Connection.objects.create(
            user=user,
            broker_slug="sandbox",
            account_id=f"ACC-ADMIN-{i}",
            account_number_masked=f"••{i:04d}",
            status=status,
            health_score=73,
            quality="good",
            last_check_at=timezone.now(),
            next_check_at=timezone.now(),
        )
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        sign_in(page, stack, user.email)
        django_user_model.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
        with_second_factor(user)
        pass_second_factor(page, stack.url, user, "/admin/connections/connection/")
        widths = page.evaluate(
            "() => { const r = document.querySelector('#changelist .results'); return [r.scrollWidth, r.clientWidth]; }"
        )
        assert widths[0] <= widths[1], widths  # every column visible, nothing behind the filters
        page.goto(f"{stack.url}/admin/preferences/")
        expect(page.locator("#content-main")).to_contain_text("Notification settings")
        expect(page.locator("#content-main")).not_to_contain_text("settingss")
    finally:
        context.close()
