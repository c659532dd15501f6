"""Security finding 9: a Content-Security-Policy on every response, no inline script, no eval."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.pages.test_browser import connect_sandbox, sign_in

POLICY = ["default-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"]
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/(?:ld\+)?json)[^>]*>", re.I)


def assert_policy(response):
    header = response["Content-Security-Policy"]
    for directive in POLICY:
        assert directive in header
    assert "unsafe-inline" not in header and "unsafe-eval" not in header


@pytest.mark.django_db
def test_every_response_carries_the_policy(client, signed_in, make_connection):
    connection = make_connection()
    anonymous = ["/accounts/login/", "/accounts/signup/", "/health/", "/health/ready/", "/admin/login/", "/nowhere/",
                 "/sandbox/"]
    for path in anonymous:
        assert_policy(client.get(path))
    pages = ["/connections/", "/connections/connect/", f"/connections/{connection.pk}/", "/accounts/2fa/"]
    for path in pages:
        response = signed_in.get(path)
        assert response.status_code == 200, path
        assert_policy(response)
        html = response.content.decode()
        assert not INLINE_SCRIPT.search(html), f"inline script on {path}"
        assert '"allowEval": false' in html or path.startswith("/accounts/")
    assert_policy(signed_in.get(f"/connections/{connection.pk}/disconnect/", headers={"HX-Request": "true"}))


@pytest.mark.browser
@pytest.mark.slow
def test_pages_work_under_the_policy_in_chromium(stack, user, page):
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text else None)
    stack.broker_app("sandbox", rotate_refresh=True)
    sign_in(page, stack, user.email)
    page.goto(f"{stack.url}/connections/connect/")
    page.fill("#broker-search", "sandbox")  # the filter script, now a static file
    expect(page.locator("#broker-cards [data-name]:visible")).to_have_count(1)
    connect_sandbox(page, stack)
    page.goto(f"{stack.url}/connections/")
    expect(page.locator("#live-indicator")).to_contain_text("Live")
    assert violations == []
