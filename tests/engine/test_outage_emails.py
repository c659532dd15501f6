"""Outage emails keep their promises: one email per outage (a Check now during it, or the
circuit flapping, is the same incident), and the "you will hear from us when it works again"
it promises does come, under the same setting. Read as a person reads them: every text and
HTML part of every message, in the order they arrived.

In-process sweeps against the standalone sandbox over HTTP (Django's locmem outbox)."""

from __future__ import annotations

import html
import re

import pytest
from django.core import mail
from django.template.loader import render_to_string

from connections.models import ConnectionEvent, ConnectionStatus
from engine.models import Notification
from engine.notifications import notifications_dispatch
from engine.services import connection_check_now
from engine.sweep import sweep_run
from pages.presenters.detail import event_view
from preferences.models import NotificationSettings
from tests.engine.conftest import time_passes
from tests.engine.test_notifications import reconnect

pytestmark = pytest.mark.django_db(transaction=True)

SITE = "https://brokerlink.example.com"
OUTAGE_SUBJECT = "Sandbox Broker is having an outage: brokerlink is waiting for it"
OVER_SUBJECT = "Sandbox Broker's outage is over: your connection on brokerlink works again"
RECOVERED_SUBJECT = "Your Sandbox Broker connection on brokerlink works again"


@pytest.fixture(autouse=True)
def site_url(settings):
    settings.SITE_URL = SITE
    settings.ENGINE_NOTIFY_AFTER_CHECKS = 3


def read(message) -> str:
    """What a reader sees: the text part, and any HTML part as text."""
    parts = [message.body]
    for content, mimetype in getattr(message, "alternatives", []):
        if mimetype == "text/html":
            parts.append(html.unescape(re.sub(r"<[^>]+>", " ", content)))
    return "\n".join(parts)


def subjects() -> list[str]:
    return [m.subject for m in mail.outbox]


def sweep() -> None:
    time_passes(3600)
    sweep_run()


def into_outage(world, conn) -> None:
    world.faults(error_5xx_rate=1.0)
    for _ in range(10):
        sweep()
        conn.refresh_from_db()
        if conn.status == ConnectionStatus.BROKER_OUTAGE:
            return
    raise AssertionError(f"no outage: {conn.status}")


def assert_reads_well(text: str) -> None:
    assert not re.search(r"[.!?]\)?\.\)?\.|\)\.\)|\.\.", text), text  # no "(HTTP 500).)." nor ".."
    assert "{{" not in text and "{%" not in text


def test_an_outage_is_one_email_and_its_promised_end_comes(world, user):
    conn = world.connection()
    into_outage(world, conn)
    assert subjects() == [OUTAGE_SUBJECT]
    outage = read(mail.outbox[0])
    assert "You will hear from us once more, when it works again." in outage
    assert "The last error: Sandbox Broker had a server error (HTTP 500)." in outage
    assert_reads_well(outage)

    # The person presses Check now during the outage, twice, and the sweeps go on: same incident.
    for _ in range(2):
        connection_check_now(conn)
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.BROKER_OUTAGE
        sweep()
    notifications_dispatch()
    assert subjects() == [OUTAGE_SUBJECT]

    world.faults(error_5xx_rate=0.0)
    for _ in range(6):
        sweep()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.CONNECTED
    # The promise kept, once.
    assert subjects() == [OUTAGE_SUBJECT, OVER_SUBJECT]
    over = read(mail.outbox[1])
    assert "Sandbox Broker is answering again" in over and "has passed its recent checks" in over
    assert f"{SITE}/connections/{conn.pk}/" in over
    assert_reads_well(over)
    assert not Notification.objects.filter(connection=conn, kind="broker_outage", resolved_at__isnull=True)
    # The connection's timeline names both emails.
    notified = conn.events.filter(kind=ConnectionEvent.Kind.NOTIFIED).order_by("created_at", "id")
    assert [event_view(e).message for e in notified] == [
        "The broker is having an outage.", "The broker's outage is over."
    ]

    # A later outage is a new incident: a new email, and again its end.
    into_outage(world, conn)
    world.faults(error_5xx_rate=0.0)
    for _ in range(6):
        sweep()
    assert subjects() == [OUTAGE_SUBJECT, OVER_SUBJECT, OUTAGE_SUBJECT, OVER_SUBJECT]


def test_whoever_hears_of_an_outage_hears_of_its_end_even_without_recovery_emails(world, user):
    # "Recovered" is about connections that needed the person; the outage's end is the outage
    # email's own promise, under the broker-outage setting.
    NotificationSettings.objects.create(user=user, recovered=False, broker_outage=True)
    conn = world.connection()
    into_outage(world, conn)
    world.faults(error_5xx_rate=0.0)
    for _ in range(6):
        sweep()
    assert subjects() == [OUTAGE_SUBJECT, OVER_SUBJECT]


def test_no_outage_email_no_end_of_outage_email(world, user):
    NotificationSettings.objects.create(user=user, broker_outage=False)
    conn = world.connection()
    into_outage(world, conn)
    world.faults(error_5xx_rate=0.0)
    for _ in range(6):
        sweep()
    assert subjects() == []


def test_a_reconnect_between_two_dead_grants_is_two_incidents_and_one_recovery(world):
    conn = world.connection(expires_in=30)
    world.faults(refresh_invalid_grant=True)
    sweep()
    reconnect(world, conn, expires_in=30)
    sweep()
    world.faults(refresh_invalid_grant=False)
    reconnect(world, conn)
    for _ in range(5):
        sweep()
    reconnect_subject = "Reconnect your Sandbox Broker account on brokerlink"
    assert [s for s in subjects() if s != RECOVERED_SUBJECT] == [reconnect_subject] * 2
    assert subjects().count(RECOVERED_SUBJECT) == 1


@pytest.mark.parametrize("kind", ["broker_outage", "failed", "needs_reauth"])
@pytest.mark.parametrize("message", ["Sandbox Broker had a server error (HTTP 503).",
                                     "Sandbox Broker had a server error (HTTP 503)", ""])
def test_problem_emails_end_each_sentence_once(kind, message, user):
    from connections.models import Connection

    conn = Connection(user=user, broker_slug="sandbox", account_label="Individual ••1234", last_error_message=message)
    context = {"connection": conn, "broker_name": "Sandbox Broker", "account_name": "Individual ••1234",
               "message": message, "reconnect_url": f"{SITE}/connections/x/", "site_url": SITE}
    text = render_to_string(f"engine/email/{kind}.txt", context)
    assert_reads_well(text)
    if message:
        assert "Sandbox Broker had a server error (HTTP 503). " in text or text.count("(HTTP 503).") == 1
