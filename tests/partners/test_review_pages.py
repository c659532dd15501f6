"""Review of issue 28: the hosted pages under hostile input, CSRF, and the OAuth hand-off when
the callback reaches another browser than the one that started the flow."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from brokers.models import BrokerApp
from connections.models import Connection
from partners.models import ConnectSession
from partners.services import connect_session_create, partner_app_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def sandbox_configured():
    app = BrokerApp(broker_slug="sandbox", environment="paper", client_id="client-1")
    app.client_secret = "secret-1"
    app.save()


@pytest.fixture
def tracker():
    return partner_app_create(name="Tracker", return_urls=["https://tracker.example/done"])


def opened(client: Client, app, external_id: str) -> ConnectSession:
    session, url = connect_session_create(app=app, end_user={"id": external_id})
    assert client.get("/" + url.split("://", 1)[1].split("/", 1)[1]).status_code == 302
    return session


@pytest.mark.parametrize(
    "token", ["%00", "%F0%9F%92%A9" * 50, "é" * 2000, "x" * 5000, "..%5C..%5Cadmin", "%FF%FE", "a%0Ab"]
)
def test_hostile_link_tokens_get_the_plain_404_page(client, token):
    client.raise_request_exception = False
    answer = client.get(f"/connect/s/{token}/")
    assert answer.status_code == 404, answer.status_code
    assert "This link is not valid" in answer.content.decode()


def test_hostile_paths_of_the_hosted_pages_are_4xx(client, tracker):
    client.raise_request_exception = False
    assert client.get("/connect/app/not-a-uuid.css").status_code == 404
    assert client.get(f"/connect/app/{tracker.pk}.css").status_code == 200
    assert client.post("/connect/start/%00/").status_code == 404
    assert client.get("/connect/start/sandbox/").status_code == 405


def test_starting_a_connect_needs_the_pages_csrf_token(tracker):
    browser = Client(enforce_csrf_checks=True)
    opened(browser, tracker, "u-1")
    assert browser.post("/connect/start/sandbox/").status_code == 403
    page = browser.get("/connect/")
    token = page.context["csrf_token"]
    started = browser.post("/connect/start/sandbox/", {"csrfmiddlewaretoken": str(token)})
    assert started.status_code == 302 and "state=" in started["Location"]


def _started_state(browser: Client) -> str:
    started = browser.post("/connect/start/sandbox/")
    assert started.status_code == 302
    return parse_qs(urlsplit(started["Location"]).query)["state"][0]


def test_a_flow_started_in_one_browser_cannot_be_finished_in_another(tracker, client, django_user_model):
    first, second = Client(), Client()
    session_a = opened(first, tracker, "u-a")
    state = _started_state(first)
    callback = f"/connections/callback/sandbox/?state={state}&code=stolen-code"
    # Another end user's browser (it holds its own connect session): that app's page, nothing linked.
    opened(second, tracker, "u-b")
    refused = second.get(callback)
    assert 400 <= refused.status_code < 500 and "Tracker" in refused.content.decode()
    # A browser with no session at all: the sign-in page, as before the hand-off existed.
    stranger = Client().get(callback)
    assert stranger.status_code == 302 and "/accounts/login/" in stranger["Location"]
    # A signed-in brokerlink user: the usual failure page, no connection for them either.
    person = django_user_model.objects.create_user(email="p@example.com", password="pw-123456789")
    signed_in = Client()
    signed_in.force_login(person)
    assert 400 <= signed_in.get(callback).status_code < 500
    assert not Connection.objects.exists()
    # The browser that started it still can (its flow and session were left alone).
    session_a.refresh_from_db()
    assert session_a.status == ConnectSession.Status.OPENED
    assert first.get("/connect/").status_code == 200
