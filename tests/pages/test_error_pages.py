"""Error pages in the app's style with a way back (issue 27): 403, 404, 500 and the busy 503,
in production and under DEBUG (`make run`) for the pages a person reaches by following links;
the busy answer to a live re-fetch keeps the card the page shows."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.db import OperationalError
from django.test import RequestFactory
from django.views import defaults

from common.threadlanes import PageThreads
from ops.busy import DatabaseBusyMiddleware

pytestmark = pytest.mark.django_db


def styled(response, heading: str) -> str:
    text = response.content.decode()
    assert response["Content-Type"].startswith("text/html")
    assert "/static/css/app.css" in text and 'class="card empty error-page"' in text
    assert heading in text
    assert 'href="/"' in text  # the way back
    assert "URLconf" not in text and "Traceback" not in text
    return text


@pytest.fixture(params=[False, True], ids=["production", "debug"])
def debug(request, settings):
    settings.DEBUG = request.param
    return request.param


def test_a_staff_page_for_a_person_without_staff_rights_is_a_styled_403(signed_in, debug):
    response = signed_in.get("/connections/system/")
    assert response.status_code == 403
    styled(response, "This page is not open to your account")
    assert "Content-Security-Policy" in response


def test_the_sandbox_controls_for_a_person_without_staff_rights_are_a_styled_403(signed_in, debug):
    response = signed_in.get("/sandbox/control/")
    assert response.status_code == 403
    styled(response, "This page is not open to your account")


def test_a_link_to_nowhere_and_a_connection_that_is_gone_are_a_styled_404(signed_in, debug):
    for path in ("/no/such/page/", f"/connections/{uuid.uuid4()}/"):
        response = signed_in.get(path, HTTP_ACCEPT="text/html")
        assert response.status_code == 404, path
        styled(response, "Page not found")
        # (django-csp leaves DEBUG's 404s without the header, for Django's technical page)
        assert debug or "Content-Security-Policy" in response


def test_the_api_and_live_fragments_keep_their_own_404(signed_in, settings):
    settings.DEBUG = True
    response = signed_in.get(f"/connections/{uuid.uuid4()}/card/", HTTP_HX_REQUEST="true")
    assert response.status_code == 404 and b"error-page" not in response.content


def test_the_500_page_needs_no_request_or_user():
    response = defaults.server_error(RequestFactory().get("/connections/"))
    assert response.status_code == 500
    styled(response, "Something went wrong on our side")


def test_database_busy_is_the_styled_503_for_a_page_and_a_204_for_a_live_refetch():
    middleware = DatabaseBusyMiddleware(lambda request: None)
    busy = OperationalError('too many connections for role "web"')
    page = RequestFactory().get("/connections/")
    response = middleware.process_exception(page, busy)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    styled(response, "brokerlink is busy right now")
    refetch = RequestFactory().get("/connections/summary/", HTTP_HX_REQUEST="true")
    refetch.htmx = True
    response = middleware.process_exception(refetch, busy)
    assert response.status_code == 204 and response["X-Brokerlink-Busy"] == "1" and response.content == b""


def test_no_free_page_thread_is_a_204_for_a_live_refetch_and_the_styled_503_for_a_page():
    release = None

    async def inner(scope, receive, send):
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(app, headers):
        answer = {}

        async def send(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = dict(message["headers"])
            else:
                answer["body"] = message.get("body", b"")

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "method": "GET", "path": "/connections/summary/", "headers": headers}
        await app(scope, receive, send)
        return answer

    async def main():
        nonlocal release
        release = asyncio.Event()
        app = PageThreads(inner, size=1, timeout=0.2)
        holder = asyncio.ensure_future(call(app, []))
        await asyncio.sleep(0)  # the holder takes the only lane
        refetch = await call(app, [(b"hx-request", b"true")])
        page = await call(app, [(b"accept", b"text/html")])
        release.set()
        assert (await holder)["status"] == 200
        return refetch, page

    refetch, page = asyncio.run(main())
    assert refetch["status"] == 204 and refetch["headers"][b"x-brokerlink-busy"] == b"1"
    assert page["status"] == 503 and page["headers"][b"content-type"].startswith(b"text/html")
    assert b"brokerlink is busy right now" in page["body"] and b'href="/"' in page["body"]


def test_favicon_is_the_brand_mark(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"].endswith(".svg")


def test_system_status_names_the_celery_transport_for_what_it_is(client, user, monkeypatch):
    from ops import views_system
    from tests.support import with_second_factor

    # Without Redis (make run) Celery's transport is a folder, checked as "broker".
    rows = [{"name": "broker", "ok": True, "detail": "ok", "latency_ms": 1}]
    monkeypatch.setattr(views_system, "health_status_page", lambda: ("healthy", rows))
    user.is_staff = True
    user.save()
    with_second_factor(user)
    client.force_login(user)
    page = client.get("/connections/system/").content.decode()
    assert 'data-service="broker"><th scope="row">Task queue (Celery&#x27;s message transport)</th>' in page


def test_admin_names_notification_settings_once():
    from preferences.models import NotificationSettings

    assert str(NotificationSettings._meta.verbose_name_plural) == "notification settings"


def test_email_addresses_page_badges_and_actions(signed_in):
    text = signed_in.get("/accounts/email/").content.decode()
    assert 'class="auth-badge auth-badge--warn"' in text  # "Unverified", a label beside the address
    assert 'class="button button--ghost"' in text and 'class="button button--danger"' in text
