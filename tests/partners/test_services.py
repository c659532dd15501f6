"""Connect sessions and end users, in process: the rules without a browser or a broker."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from api.models import ApiAuditEntry, Scope
from api.services import service_key_connections, service_key_create
from brokers.models import BrokerApp
from connections.models import Connection, ConnectionStatus
from pages.selectors import connection_list_for_user
from partners.models import ConnectSession, EndUser
from partners.services import (
    BROWSER_KEY,
    EndUserBusy,
    SessionProblem,
    SessionRequestInvalid,
    connect_session_create,
    connect_session_for_browser,
    connect_session_open,
    end_user_delete,
    end_user_disconnect_all,
    end_user_upsert,
    partner_app_create,
)

pytestmark = pytest.mark.django_db

RETURN = "https://tracker.example/brokerlink/done"


@pytest.fixture
def sandbox_configured():
    app = BrokerApp(broker_slug="sandbox", environment="paper", client_id="client-1")
    app.client_secret = "secret-1"
    app.save()
    return app


@pytest.fixture
def tracker():
    return partner_app_create(name="Tracker", return_urls=[RETURN])


@pytest.fixture
def bot():
    return partner_app_create(name="BotPlatform", return_urls=["https://bot.example/back"])


def end_user_connection(end_user, account_id="acct-1", status=ConnectionStatus.CONNECTED) -> Connection:
    connection = Connection(end_user=end_user, broker_slug="sandbox", account_id=account_id, status=status)
    connection.access_token = "access"
    connection.refresh_token = "refresh"
    connection.save()
    return connection


def token_of(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def test_end_users_are_per_app_and_never_brokerlink_accounts(tracker, bot, django_user_model):
    a = end_user_upsert(app=tracker, external_id="u-42", email="ada@example.com")
    b = end_user_upsert(app=bot, external_id="u-42")
    again = end_user_upsert(app=tracker, external_id="u-42", display_name="Ada")
    assert a.pk != b.pk and again.pk == a.pk
    assert again.display_name == "Ada" and again.email == "ada@example.com"
    assert not django_user_model.objects.filter(email="ada@example.com").exists()


def test_session_token_is_only_stored_hashed_and_urls_differ(tracker, sandbox_configured):
    first, url = connect_session_create(app=tracker, end_user={"id": "u-1"}, brokers=["sandbox"], return_url=RETURN)
    _second, other_url = connect_session_create(app=tracker, end_user={"id": "u-1"})
    token = token_of(url)
    assert url != other_url and len(token) >= 40
    row = ConnectSession.objects.get(pk=first.pk)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(ConnectSession.objects.filter(pk=first.pk).values().get())
    assert row.expires_at > timezone.now()


@pytest.mark.parametrize(
    "return_url",
    [RETURN + "/", RETURN + "?next=https://evil.example", "https://tracker.example/brokerlink", "https://evil.example/"],
)
def test_return_url_must_match_the_allow_list_exactly(tracker, return_url):
    with pytest.raises(SessionRequestInvalid) as refused:
        connect_session_create(app=tracker, end_user={"id": "u-1"}, return_url=return_url)
    assert refused.value.status == 400
    assert not ConnectSession.objects.exists()


def test_unknown_broker_and_missing_end_user_are_400(tracker, sandbox_configured):
    with pytest.raises(SessionRequestInvalid, match="nosuchbroker"):
        connect_session_create(app=tracker, end_user={"id": "u-1"}, brokers=["nosuchbroker"])
    with pytest.raises(SessionRequestInvalid, match="end_user.id"):
        connect_session_create(app=tracker, end_user={"id": "  "})


def test_reconnect_session_only_for_the_apps_own_live_connection(tracker, bot, sandbox_configured):
    mine = end_user_connection(end_user_upsert(app=tracker, external_id="u-1"))
    theirs = end_user_connection(end_user_upsert(app=bot, external_id="u-1"))
    session, _url = connect_session_create(app=tracker, connection_id=mine.pk)
    assert session.is_reconnect and session.end_user == mine.end_user and session.brokers == ["sandbox"]
    with pytest.raises(SessionRequestInvalid) as foreign:
        connect_session_create(app=tracker, connection_id=theirs.pk)
    assert foreign.value.status == 404
    Connection.objects.filter(pk=mine.pk).update(status=ConnectionStatus.DISCONNECTED)
    with pytest.raises(SessionRequestInvalid) as gone:
        connect_session_create(app=tracker, connection_id=mine.pk)
    assert gone.value.status == 409


def test_first_open_binds_the_browser_and_spends_the_link(tracker):
    _session, url = connect_session_create(app=tracker, end_user={"id": "u-1"})
    first_browser, second_browser = {}, {}
    opened = connect_session_open(token_of(url), browser=first_browser)
    assert opened.status == ConnectSession.Status.OPENED and BROWSER_KEY in first_browser
    with pytest.raises(SessionProblem) as reused:
        connect_session_open(token_of(url), browser=second_browser)
    assert reused.value.code == "used"
    assert connect_session_for_browser(first_browser).pk == opened.pk
    with pytest.raises(SessionProblem) as elsewhere:
        connect_session_for_browser(second_browser)
    assert elsewhere.value.code == "no_session"
    # A browser that copies the session id but not its secret gets nothing.
    forged = {BROWSER_KEY: {"id": str(opened.pk), "secret": "guess"}}
    with pytest.raises(SessionProblem):
        connect_session_for_browser(forged)


def test_expired_and_unknown_links(tracker, settings):
    _session, url = connect_session_create(app=tracker, end_user={"id": "u-1"})
    later = timezone.now() + timedelta(minutes=31)
    with pytest.raises(SessionProblem) as expired:
        connect_session_open(token_of(url), browser={}, now=later)
    assert expired.value.code == "expired"
    with pytest.raises(SessionProblem) as unknown:
        connect_session_open("not-a-token", browser={})
    assert unknown.value.code == "unknown"


def test_session_minutes_are_configurable(tracker, settings):
    settings.CONNECT_SESSION_MINUTES = 2
    session, _url = connect_session_create(app=tracker, end_user={"id": "u-1"})
    assert timedelta(minutes=1) < session.expires_at - timezone.now() <= timedelta(minutes=2)


def test_opening_is_audited_for_the_key_that_created_the_session(tracker):
    key, _plain = service_key_create(name="tracker", scopes=[Scope.CONNECT_SESSIONS], app=tracker)
    _session, url = connect_session_create(app=tracker, key_id=key.pk, end_user={"id": "u-1"})
    connect_session_open(token_of(url), browser={})
    with pytest.raises(SessionProblem):
        connect_session_open(token_of(url), browser={})
    session_actions = ApiAuditEntry.objects.filter(key=key, action__startswith="session_").order_by("id")
    assert list(session_actions.values_list("action", flat=True)) == [
        "session_open",
        "session_fail",
    ]


def test_one_owner_per_connection(tracker, user):
    end_user = end_user_upsert(app=tracker, external_id="u-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Connection.objects.create(user=user, end_user=end_user, broker_slug="sandbox", account_id="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        Connection.objects.create(broker_slug="sandbox", account_id="a")


def test_keys_and_user_pages_keep_owners_apart(tracker, bot, user):
    mine = end_user_connection(end_user_upsert(app=tracker, external_id="u-1"))
    theirs = end_user_connection(end_user_upsert(app=bot, external_id="u-1"))
    persons = Connection.objects.create(user=user, broker_slug="sandbox", account_id="p", status="connected")
    tracker_key, _ = service_key_create(name="t", scopes=[Scope.READ_STATUS], app=tracker)
    operator_key, _ = service_key_create(name="o", scopes=[Scope.READ_STATUS], all_users=True)
    assert set(service_key_connections(tracker_key)) == {mine}
    assert theirs not in set(service_key_connections(operator_key)) and persons in set(
        service_key_connections(operator_key)
    )
    assert mine not in set(service_key_connections(operator_key))
    assert list(connection_list_for_user(user=user)) == [persons]


def test_offboarding_then_delete(tracker, monkeypatch):
    end_user = end_user_upsert(app=tracker, external_id="u-1")
    first, second = end_user_connection(end_user, "a1"), end_user_connection(end_user, "a2")
    with pytest.raises(EndUserBusy):
        end_user_delete(end_user=end_user)
    results = end_user_disconnect_all(end_user=end_user)
    assert {c.pk for c, _ in results} == {first.pk, second.pk}
    assert set(Connection.objects.filter(end_user=end_user).values_list("status", flat=True)) == {"disconnected"}
    assert not any(c.has_tokens for c in Connection.objects.filter(end_user=end_user))
    assert end_user_delete(end_user=end_user) == 2
    assert not EndUser.objects.filter(pk=end_user.pk).exists()
    assert not Connection.objects.filter(pk__in=[first.pk, second.pk]).exists()


def test_a_reconnect_link_for_a_connection_disconnected_since_is_refused(tracker, sandbox_configured):
    connection = end_user_connection(end_user_upsert(app=tracker, external_id="u-1"))
    _session, url = connect_session_create(app=tracker, connection_id=connection.pk)
    browser = {}
    connect_session_open(token_of(url), browser=browser)
    Connection.objects.filter(pk=connection.pk).update(status=ConnectionStatus.DISCONNECTED)
    with pytest.raises(SessionProblem) as refused:
        connect_session_for_browser(browser)
    assert refused.value.code == "disconnected"
