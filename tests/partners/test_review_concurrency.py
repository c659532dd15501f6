"""Review of issue 28 (connect sessions): what an attacker or a careless caller tries, each a
test that failed before its fix (or pins a rule the review checked)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection as db_connection

from brokers.models import BrokerApp
from connections.models import Connection, ConnectionStatus
from partners.services import (
    SessionProblem,
    connect_session_create,
    connect_session_open,
    partner_app_create,
)

RETURN = "https://tracker.example/brokerlink/done"


@pytest.fixture
def sandbox_app(db):
    app = BrokerApp(broker_slug="sandbox", environment="paper", client_id="client-1")
    app.client_secret = "secret-1"
    app.save()
    return app


@pytest.fixture
def tracker(db):
    return partner_app_create(name="Tracker", return_urls=[RETURN])


@pytest.fixture
def bot(db):
    return partner_app_create(name="BotPlatform", return_urls=["https://bot.example/back"])


def end_user_connection(end_user, account_id="acct-1", *, broker_app=None) -> Connection:
    connection = Connection(end_user=end_user, broker_slug="sandbox", account_id=account_id, broker_app=broker_app)
    connection.status = ConnectionStatus.CONNECTED
    connection.access_token = "access"
    connection.refresh_token = "refresh"
    connection.save()
    return connection


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


# --- a link opened by two browsers at once ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_browsers_opening_one_link_at_once_exactly_one_gets_it():
    tracker = partner_app_create(name="Tracker")
    _session, url = connect_session_create(app=tracker, end_user={"id": "u-1"})
    token = url.rstrip("/").rsplit("/", 1)[-1]
    browsers = [{} for _ in range(4)]
    outcomes: list[str] = []
    start = threading.Barrier(len(browsers))

    def open_in(browser):
        try:
            start.wait(timeout=10)
            connect_session_open(token, browser=browser)
            outcomes.append("opened")
        except SessionProblem as problem:
            outcomes.append(problem.code)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=open_in, args=(b,)) for b in browsers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["opened", "used", "used", "used"]
    assert sum(1 for b in browsers if b) == 1
