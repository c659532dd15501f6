"""The hosted connect pages in process: the link is spent on first open, the app's look, and
the pages a stranger sees."""

from __future__ import annotations

import pytest

from brokers.models import BrokerApp
from partners.services import connect_session_create, partner_app_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def sandbox_configured():
    app = BrokerApp(broker_slug="sandbox", environment="paper", client_id="client-1")
    app.client_secret = "secret-1"
    app.save()


@pytest.fixture
def tracker():
    return partner_app_create(
        name="Tracker", logo_url="https://cdn.tracker.example/logo.png", brand_colour="#0a7d5a"
    )


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def test_open_redirects_to_a_url_without_the_token_and_shows_the_app(client, tracker):
    _session, url = connect_session_create(app=tracker, end_user={"id": "u-1", "display_name": "Ada"})
    link = path_of(url)
    opened = client.get(link)
    assert opened.status_code == 302 and opened["Location"] == "/connect/"
    page = client.get("/connect/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Tracker" in html and "for <strong>Ada</strong>" in html and "Connect Sandbox Broker" in html
    assert "Create account" not in html  # an end user is never asked to sign up to brokerlink
    assert "https://cdn.tracker.example" in page["Content-Security-Policy"]
    assert "no-store" in page["Cache-Control"]
    css = client.get(f"/connect/app/{tracker.pk}.css")
    assert css["Content-Type"].startswith("text/css") and "#0a7d5a" in css.content.decode()
    # The same link again, even in the same browser: spent.
    again = client.get(link)
    assert again.status_code == 410 and "already used" in again.content.decode()


def test_a_broker_the_session_does_not_offer_cannot_be_started(client, tracker):
    _session, url = connect_session_create(app=tracker, end_user={"id": "u-1"}, brokers=["sandbox"])
    client.get(path_of(url))
    assert client.post("/connect/start/alpaca/").status_code == 404
    started = client.post("/connect/start/sandbox/")
    assert started.status_code == 302 and "state=" in started["Location"]


def test_a_stranger_gets_a_plain_page(client):
    answer = client.get("/connect/")
    assert answer.status_code == 404 and "No connect session in this browser" in answer.content.decode()
    assert client.post("/connect/start/sandbox/").status_code == 404
    assert client.get("/connect/s/forged/").status_code == 404
