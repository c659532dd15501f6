"""Emails to a connection's owner: needs re-authentication, failed, recovered, expiry warnings.

In-process sweeps against the standalone sandbox over HTTP, so Django's locmem outbox sees
every email the sweep sends."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.urls import reverse
from django.utils import timezone

from connections.broker_client import profile_for
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.state import connection_transition
from connections.tokens import connection_apply_token_response
from engine.models import EngineState, Notification
from engine.notifications import expiry_warnings_send, notifications_dispatch
from engine.sweep import sweep_run
from ops.models import WebhookDelivery, WebhookEndpoint
from ops.webhooks import webhook_secret_new
from tests.engine.conftest import time_passes, token_was_issued_long_ago
from tests.engine.history import ACCESS_TOKEN, REFRESH_TOKEN, stored_connection

pytestmark = pytest.mark.django_db(transaction=True)

SITE = "https://brokerlink.example.com"


@pytest.fixture(autouse=True)
def site_url(settings):
    settings.SITE_URL = SITE
    settings.ENGINE_NOTIFY_AFTER_CHECKS = 3


def page_link(conn) -> str:
    return f"{SITE}/connections/{conn.pk}/"


def next_sweep() -> None:
    """The next sweep that checks every active connection (each sweep dispatches emails)."""
    time_passes(3600)
    sweep_run()


def reconnect(world, conn, *, expires_in: float | None = None) -> None:
    """What the person's reconnect does (connections.services): a new grant, status connected."""
    token = world.tokens()
    if expires_in is not None:
        token["expires_in"] = expires_in
    conn.refresh_from_db()
    conn.refresh_token = ""
    connection_apply_token_response(
        connection=conn, profile=profile_for("sandbox", "live"), token=token, first_grant=True
    )
    if expires_in is not None:
        token_was_issued_long_ago(conn, profile_for("sandbox", "live"))
    conn.retry_attempt = conn.consecutive_failures = 0
    conn.last_error_category, conn.last_error_message = "", ""
    conn.next_check_at = timezone.now()
    connection_transition(
        connection=conn, to_status=ConnectionStatus.CONNECTED, kind=ConnectionEvent.Kind.RECONNECTED, save=False
    )
    conn.save()


def assert_no_token(message, *tokens: str) -> None:
    for token in tokens:
        assert token
        assert token not in message.body
        assert token not in message.subject


def test_needs_reauth_emails_the_owner_once_with_a_reconnect_link_and_no_token(world, user, client):
    conn = world.connection(expires_in=30)
    tokens = (conn.access_token, conn.refresh_token)
    world.faults(refresh_invalid_grant=True)

    sweep_run()

    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.NEEDS_REAUTH
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [user.email]
    assert message.subject == "Reconnect your Sandbox Broker account on brokerlink"
    assert page_link(conn) in message.body
    assert "invalid_grant" not in message.body and "Needs you" in message.body  # plain words only
    assert_no_token(message, *tokens)
    assert conn.events.filter(kind=ConnectionEvent.Kind.NOTIFIED).count() == 1

    for _ in range(3):  # later sweeps, and a dispatch on its own: the same incident, no repeat
        next_sweep()
    notifications_dispatch()
    assert len(mail.outbox) == 1

    # The link opens the connection's page, which offers the Reconnect button.
    client.force_login(user)
    page = client.get(urlsplit(page_link(conn)).path)
    assert page.status_code == 200
    assert reverse("connections:reconnect", args=[conn.pk]) in page.content.decode()


def test_after_the_retry_budget_the_connection_keeps_being_checked_and_recovers_by_itself(world, user):
    conn = world.connection()
    # Seven failed checks in a row already: the sandbox allows eight fast retries.
    max_attempts = profile_for("sandbox", "live").backoff.max_attempts
    EngineState.objects.filter(pk=conn.pk).update(retry_attempt=max_attempts - 1)
    world.faults(error_5xx_rate=1.0)

    next_sweep()

    conn.refresh_from_db()
    # Not "failed" (never checked again, tokens left to expire): still active, probed slowly.
    assert conn.status == ConnectionStatus.DEGRADED
    assert conn.retry_attempt == max_attempts
    assert conn.next_check_at - conn.last_check_at == timedelta(seconds=300)  # SLOW_PROBE_SECONDS
    assert mail.outbox == []  # nothing for the person to do
    next_sweep()
    conn.refresh_from_db()
    # Still checked: another failure (or, once the broker's circuit opens, waiting for it).
    assert conn.status in (ConnectionStatus.DEGRADED, ConnectionStatus.BROKER_OUTAGE)
    assert conn.last_check_at is not None
    # Nothing asks the person to act; at most the "broker outage" notice (informational, on by
    # default in the notification settings) once the circuit opens at this one-connection broker.
    outage_notices = [m for m in mail.outbox if "is having an outage" in m.subject]
    assert len(mail.outbox) == len(outage_notices) <= 1, [m.subject for m in mail.outbox]

    # The broker answers again: the next slow probe passes and the connection is back, unaided.
    world.faults(error_5xx_rate=0.0)
    next_sweep()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.CONNECTED and conn.retry_attempt == 0
    assert len(mail.outbox) == len(outage_notices), [m.subject for m in mail.outbox]


def test_a_connection_flapping_ok_bad_ok_bad_sends_nothing(world):
    conn = world.connection()
    for i in range(8):
        world.faults(error_5xx_rate=1.0 if i % 2 else 0.0)
        next_sweep()
    conn.refresh_from_db()
    flaps = conn.events.filter(kind=ConnectionEvent.Kind.STATUS_CHANGED, to_status=ConnectionStatus.DEGRADED)
    assert flaps.count() == 4  # it really flapped
    assert conn.status == ConnectionStatus.DEGRADED
    assert mail.outbox == []


def test_a_recovery_that_flaps_sends_recovered_only_once_it_holds(world, settings):
    settings.ENGINE_NOTIFY_AFTER_CHECKS = 2
    conn = world.connection(expires_in=30)
    world.faults(refresh_invalid_grant=True)
    next_sweep()
    assert len(mail.outbox) == 1
    world.faults(refresh_invalid_grant=False)
    reconnect(world, conn)
    for i in range(6):  # ok, bad, ok, bad, ok, bad
        world.faults(error_5xx_rate=1.0 if i % 2 else 0.0)
        next_sweep()
    assert len(mail.outbox) == 1
    world.faults(error_5xx_rate=0.0)
    next_sweep()
    assert len(mail.outbox) == 1  # one passing check after the last failure
    next_sweep()
    assert [m.subject for m in mail.outbox][1:] == ["Your Sandbox Broker connection on brokerlink works again"]
    next_sweep()
    assert len(mail.outbox) == 2


def test_two_incidents_before_a_recovery_get_one_recovered_email(world):
    conn = world.connection(expires_in=30)
    world.faults(refresh_invalid_grant=True)
    next_sweep()
    reconnect(world, conn, expires_in=30)  # the new grant dies at once too
    next_sweep()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.NEEDS_REAUTH
    assert len(mail.outbox) == 2  # a second incident: the person reconnected in between

    world.faults(refresh_invalid_grant=False)
    reconnect(world, conn)
    for _ in range(5):
        next_sweep()
    subjects = [m.subject for m in mail.outbox]
    assert subjects.count("Your Sandbox Broker connection on brokerlink works again") == 1
    assert len(subjects) == 3
    assert not Notification.objects.filter(connection=conn, resolved_at__isnull=True).exclude(kind="recovered")


class BrokenMailServer(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise ConnectionRefusedError("SMTP server down")


def test_a_mail_server_outage_does_not_lose_the_email(user, settings):
    conn = stored_connection(user, status=ConnectionStatus.NEEDS_REAUTH, last_error_category="auth")
    settings.EMAIL_BACKEND = f"{__name__}.BrokenMailServer"
    assert notifications_dispatch() == 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert notifications_dispatch() == 1
    assert [m.to for m in mail.outbox] == [[user.email]]
    assert page_link(conn) in mail.outbox[0].body
    assert notifications_dispatch() == 0


def test_no_email_for_a_problem_of_a_user_without_an_address_and_no_crash(user, other_user):
    other_user.email = ""
    other_user.save()
    stored_connection(other_user, status=ConnectionStatus.FAILED)
    mine = stored_connection(user, account_id="acct-2", status=ConnectionStatus.FAILED)
    assert notifications_dispatch() == 1
    assert [m.to for m in mail.outbox] == [[user.email]]
    assert page_link(mine) in mail.outbox[0].body


# --- expiry warnings -----------------------------------------------------------------------


def grant(conn: Connection, *, at) -> Connection:
    """Store a (re)authorization made at `at`, dated by the broker's own rules (hard cap, daily
    expiry), as the connect and reconnect flows do."""
    profile = profile_for(conn.broker_slug, "live")
    token = {"access_token": ACCESS_TOKEN, "expires_in": 1800, "token_type": "Bearer"}
    if profile.token_rules.issues_refresh_token:
        token["refresh_token"] = REFRESH_TOKEN
    conn.refresh_token = ""
    connection_apply_token_response(connection=conn, profile=profile, token=token, now=at, first_grant=True)
    conn.save()
    return conn


def granted(user, slug: str, *, at, account_id: str = "acct-1", **fields) -> Connection:
    fields.setdefault("status", ConnectionStatus.CONNECTED)
    return grant(Connection(user=user, broker_slug=slug, environment="live", account_id=account_id, **fields), at=at)


def test_schwab_seven_day_cap_is_warned_two_days_ahead_once_per_deadline(user):
    now = timezone.now()
    conn = granted(user, "schwab", at=now - timedelta(days=4))
    assert conn.reauth_deadline_at == now + timedelta(days=3)  # Schwab: 7 days from consent
    assert expiry_warnings_send(now=now) == 0  # three days left: too early

    warn_at = now + timedelta(days=1, hours=1)  # 47 hours left
    assert expiry_warnings_send(now=warn_at) == 1
    message = mail.outbox[0]
    assert message.to == [user.email]
    assert message.subject == "Your Charles Schwab authorization expires soon"
    assert f"{conn.reauth_deadline_at:%Y-%m-%d %H:%M}" in message.body
    assert page_link(conn) in message.body
    assert_no_token(message, ACCESS_TOKEN, REFRESH_TOKEN)
    # The hourly task keeps running: once per deadline.
    for hours in range(1, 40, 6):
        assert expiry_warnings_send(now=warn_at + timedelta(hours=hours)) == 0

    # The person reconnects: a new 7-day grant, a new deadline, one new warning in due time.
    grant(conn, at=warn_at + timedelta(hours=2))
    assert expiry_warnings_send(now=warn_at + timedelta(days=3)) == 0
    assert expiry_warnings_send(now=conn.reauth_deadline_at - timedelta(hours=30)) == 1
    assert expiry_warnings_send(now=conn.reauth_deadline_at - timedelta(hours=20)) == 0
    assert len(mail.outbox) == 2


def test_a_daily_expiry_is_warned_two_hours_ahead(user):
    # Upstox: tokens end at 03:30 Asia/Kolkata every day, and there is no refresh token.
    now = timezone.now()
    conn = granted(user, "upstox", at=now)
    deadline = conn.reauth_deadline_at
    assert now < deadline <= now + timedelta(hours=24)
    assert expiry_warnings_send(now=deadline - timedelta(hours=2, minutes=5)) == 0
    assert expiry_warnings_send(now=deadline - timedelta(hours=1, minutes=55)) == 1
    assert expiry_warnings_send(now=deadline - timedelta(minutes=30)) == 0
    assert mail.outbox[0].subject == "Your Upstox authorization expires soon"
    assert page_link(conn) in mail.outbox[0].body


def test_an_expiry_warning_is_one_webhook_however_often_its_email_is_retried(user, settings):
    """The warning's webhook (connection.expiring) goes out with its first record; a mail server
    that fails makes the engine record the warning again on every try, not announce it again."""
    endpoint = WebhookEndpoint(url="http://127.0.0.1:9/never")
    endpoint.secret = webhook_secret_new()
    endpoint.save()
    now = timezone.now()
    conn = granted(user, "schwab", at=now - timedelta(days=6))
    settings.EMAIL_BACKEND = f"{__name__}.BrokenMailServer"
    for minutes in (0, 10, 20):
        assert expiry_warnings_send(now=now + timedelta(minutes=minutes)) == 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert expiry_warnings_send(now=now + timedelta(minutes=30)) == 1
    assert expiry_warnings_send(now=now + timedelta(minutes=40)) == 0

    assert [m.subject for m in mail.outbox] == ["Your Charles Schwab authorization expires soon"]
    (delivery,) = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert delivery.event == "connection.expiring"
    assert delivery.payload["data"]["deadline"] == conn.reauth_deadline_at.isoformat()

    # A new grant is a new deadline: a new warning, and its own webhook.
    grant(conn, at=now + timedelta(hours=1))
    assert expiry_warnings_send(now=conn.reauth_deadline_at - timedelta(hours=30)) == 1
    assert WebhookDelivery.objects.filter(endpoint=endpoint, event="connection.expiring").count() == 2


def test_no_expiry_warning_for_connections_that_already_need_a_person(user):
    now = timezone.now()
    granted(user, "schwab", at=now - timedelta(days=6), account_id="a1", status=ConnectionStatus.NEEDS_REAUTH)
    granted(user, "schwab", at=now - timedelta(days=6), account_id="a2", status=ConnectionStatus.DISCONNECTED)
    granted(user, "sandbox", at=now - timedelta(days=6), account_id="a3")  # no hard deadline at all
    assert expiry_warnings_send(now=now) == 0
    assert mail.outbox == []
