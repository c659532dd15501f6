"""Rotating refresh tokens nobody declared, against a strict server, through the production path.

The broker is docs/brokers.md's "Minimal plain OAuth 2.0 broker" YAML as written (no
`rotates_refresh_token`), pointed at the standalone sandbox in its strictest mode: every refresh
rotates the refresh token, and presenting a spent one revokes the whole grant (RFC 9700 §4.14).
The sandbox runs as its own process, so SIGSTOP stalls it the way a hung broker looks from
outside: the kernel keeps accepting connections into the listen backlog, and on SIGCONT the
queued requests are processed in order, answers to clients that gave up included.

Checks run as the beat's tick and its lanes run them (sweep_tick, then sweep_run as a lane),
in this process, or in real Celery workers. Each test ends with its numbers: refresh tokens
reused (the sandbox's rotated_reuses), grants lost, and what the connection's page says.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from brokers.models import BrokerApp
from connections.models import ConnectionEvent, ConnectionStatus
from engine.refresh_runner import refreshes_wait_idle
from tests.engine.rotation_world import (  # noqa: F401 - acme_fixture is the `acme` fixture
    SLUG,
    AcmeWorld,
    acme_fixture,
    acme_make,
    minimal_yaml,
    page_says,
    row,
    tick,
    ticks_until,
)

# --- learning -------------------------------------------------------------------------------


def test_the_minimal_yaml_broker_is_learned_rotating_and_shown_to_staff(acme, admin_user):
    app = BrokerApp.objects.get(pk=acme.app.pk)
    assert app.refresh_rotation_seen_at is None and app.refresh_kept_count == 0
    conn = acme.connection(expires_in=100)
    tick()
    assert refreshes_wait_idle(timeout=30)
    conn = row(conn)
    assert conn.access_expires_at > timezone.now() + timedelta(seconds=50), "refreshed"
    app.refresh_from_db()
    assert app.refresh_rotation_seen_at is not None, "a new refresh token in the answer: rotating"
    client = Client()
    client.force_login(admin_user)
    status = client.get(reverse("ops:system_status")).content.decode()
    line = re.search(r'data-refresh-app="acme".*?data-field="rotation">([^<]+)<', status, flags=re.S).group(1)
    assert "not declared rotating; seen rotating since" in line and "treated as single-use" in line
    change = client.get(reverse("admin:brokers_brokerapp_change", args=[app.pk])).content.decode()
    assert "seen rotating since" in change
    numbers = acme.report("minimal YAML, learned", conn, **{"status page": line})
    assert numbers["refresh tokens reused"] == 0 and numbers["grants lost"] == 0


def test_a_broker_that_keeps_its_refresh_token_is_trusted_only_after_two_answers(shared_sandbox, settings, tmp_path):
    sandbox_server = shared_sandbox  # never paused here: the session's sandbox process
    from brokers.services import broker_app_refresh_single_use
    from connections.broker_client import profile_for
    from engine.refresh import connection_refresh

    path = tmp_path / "brokers.yaml"
    path.write_text(minimal_yaml(sandbox_server.url))
    settings.BROKERS_FILE = str(path)
    client = sandbox_server.create_client(rotate_refresh=False)
    app = BrokerApp(broker_slug=SLUG, environment="live", client_id=client["client_id"])
    app.client_secret = client["client_secret"]
    app.save()
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create_user(email="keeper@example.com", password="x" * 16)
    world = AcmeWorld(sandbox_server, client, app, owner)
    conn = world.connection()
    profile = profile_for(SLUG, "live")
    seen = []
    for _ in range(3):
        app.refresh_from_db()
        seen.append(broker_app_refresh_single_use(app, profile))
        assert connection_refresh(conn.pk, reason="manual", force=True).refreshed
    app.refresh_from_db()
    assert seen == [True, True, False], "single-use until it kept the token twice"
    assert app.refresh_rotation_seen_at is None and app.refresh_kept_count == 3


# --- stalls ---------------------------------------------------------------------------------


# The broker read timeout (10 s by default) compressed to 3 s, the refresh deadline (180 s) to
# 20 s: stalls past one and past two read timeouts, well inside the deadline.
READ_TIMEOUT = 3


@pytest.mark.parametrize(
    "stall_seconds",
    [READ_TIMEOUT + 1, 2 * READ_TIMEOUT + 1],
    ids=["stall-past-read-timeout", "stall-past-2x-read-timeout"],
)
def test_a_stall_shorter_than_the_deadline_is_waited_out_and_loses_nothing(acme, settings, stall_seconds):
    settings.BROKER_READ_TIMEOUT_SECONDS = READ_TIMEOUT
    settings.ENGINE_REFRESH_DEADLINE_SECONDS = 20
    conn = acme.connection(expires_in=200)  # due, and the access token lives through the stall
    before = acme.counters()
    acme.sandbox.pause()
    stalled_at = time.monotonic()
    ticks = 0
    try:
        # Ticks keep coming during the stall; every heartbeat queues in the backlog and times out.
        def stall_over():
            nonlocal ticks
            ticks += 1
            return time.monotonic() - stalled_at >= stall_seconds

        ticks_until(stall_over, timeout=stall_seconds + 30, message="the stall lasted")
        stalled = row(conn)
        assert stalled.refresh_claim_owner and stalled.refresh_sent_at, "one refresh out, still waited for"
        said_during = page_says(acme.user, stalled)
    finally:
        acme.sandbox.resume()
    assert refreshes_wait_idle(timeout=30), "the queued refresh is answered on resume"
    conn = row(conn)
    assert conn.refresh_sent_at is None and conn.access_expires_at > timezone.now() + timedelta(seconds=50)
    ticks_until(lambda: row(conn).status == ConnectionStatus.CONNECTED, timeout=30, message="connected again")
    after = acme.counters()
    numbers = acme.report(
        f"stall {stall_seconds} s",
        conn,
        **{
            "ticks during the stall": ticks,
            "queued heartbeats answered on resume": after["account_calls"] - before["account_calls"],
            "page said during the stall": said_during,
        },
    )
    assert numbers["refresh tokens reused"] == 0 and numbers["grants lost"] == 0
    assert after["refreshes"] - before["refreshes"] == 1, "one refresh token spent, once"
    assert "token refresh" not in said_during, "nothing about the refresh while the access token lives"


def test_a_stall_longer_than_the_deadline_waits_for_the_broker_then_resends_once(acme, settings, admin_user):
    deadline = 3
    settings.ENGINE_REFRESH_DEADLINE_SECONDS = deadline
    conn = acme.connection(expires_in=20)  # usable for 5 s more, then only a refresh helps
    before = acme.counters()
    acme.sandbox.pause()
    stalled_at = time.monotonic()
    try:
        tick()
        sent_at = row(conn).refresh_sent_at
        assert sent_at is not None, "the refresh went out"
        # The deadline passes and the access token runs out, the broker still stalled: the
        # connection says plainly what it waits for, and no second refresh goes out.
        ticks_until(
            lambda: (r := row(conn)).refresh_claim_until is None and "Waiting for" in r.last_error_message,
            timeout=60,
            message="the refresh given up on and the access token run out",
        )
        ticks_until(lambda: time.monotonic() - stalled_at > 3 * deadline, timeout=60, message="three deadlines")
        waiting = row(conn)
        assert waiting.refresh_sent_at == sent_at, "nothing resent into the stalled broker"
        said_waiting = page_says(acme.user, waiting)
        assert said_waiting.startswith("Waiting for the broker: Waiting for Acme Securities to answer a token refresh")
        assert waiting.status == ConnectionStatus.DEGRADED
        assert "Waiting for Acme Securities to answer a token refresh" in waiting.last_error_message
        staff = Client()
        staff.force_login(admin_user)
        status = staff.get(reverse("ops:system_status")).content.decode()
        awaiting = re.search(r'data-refresh-app="acme".*?data-field="awaiting">(\d+)<', status, flags=re.S).group(1)
        assert awaiting == "1", "the operator sees the connection waiting for the broker"
    finally:
        acme.sandbox.resume()
    stall = time.monotonic() - stalled_at
    # On resume the queued refresh is processed (its answer goes to a closed socket). A probe
    # answered after it shows the broker answers again; then one deliberate resend, which the
    # strict broker treats as reuse: that grant cannot be saved without a reuse grace.
    ticks_until(
        lambda: row(conn).status == ConnectionStatus.NEEDS_REAUTH, timeout=60, message="the resend was answered"
    )
    events = list(ConnectionEvent.objects.filter(connection=conn).values_list("message", flat=True))
    assert any("answered a request sent after it" in m and "sending the refresh again, once" in m for m in events)
    numbers = acme.report(
        f"stall {stall:.0f} s, longer than the {deadline} s deadline",
        conn,
        **{"page said while waiting": said_waiting, "status page: refresh not answered": awaiting},
    )
    assert numbers["refresh tokens reused"] == 1, "the one deliberate resend; never one into the stall"
    assert acme.counters()["refreshes"] - before["refreshes"] == 1
    assert numbers["grants lost"] == 1
    assert "reconnect" in row(conn).last_error_message.lower()


def test_a_declared_reuse_grace_lets_a_lost_answer_be_resent_without_waiting(sandbox_server, settings, user, tmp_path):
    """A broker documented to answer a rotated-away refresh token for 10 minutes, stalled past
    the deadline: brokerlink resends inside the grace (into the backlog, processed after the
    first request), and the grant survives."""
    deadline = 3
    settings.ENGINE_REFRESH_DEADLINE_SECONDS = deadline
    acme = acme_make(
        sandbox_server,
        settings,
        user,
        tmp_path,
        yaml_extra="    refresh_reuse_grace_seconds: 600\n",
        refresh_reuse_grace_seconds=600,
    )
    conn = acme.connection(expires_in=200)
    before = acme.counters()
    acme.sandbox.pause()
    stalled_at = time.monotonic()
    try:
        tick()
        ticks_until(
            lambda: ConnectionEvent.objects.filter(connection=conn, message__contains="window is still open").exists(),
            timeout=60,
            message="a resend inside the grace",
        )
        ticks_until(lambda: time.monotonic() - stalled_at > 3 * deadline, timeout=60, message="three deadlines")
    finally:
        acme.sandbox.resume()
    stall = time.monotonic() - stalled_at
    ticks_until(
        lambda: (r := row(conn)).refresh_sent_at is None and r.status == ConnectionStatus.CONNECTED,
        timeout=60,
        message="refreshed and connected",
    )
    assert refreshes_wait_idle(timeout=30)
    conn = row(conn)
    assert conn.access_expires_at > timezone.now() + timedelta(seconds=50)
    sent = acme.counters()["refreshes"] - before["refreshes"]
    numbers = acme.report(
        f"reuse grace 600 s, stall {stall:.0f} s past the {deadline} s deadline", conn, **{"refreshes processed": sent}
    )
    assert numbers["refresh tokens reused"] == 0 and numbers["grants lost"] == 0
    assert sent >= 2, "the first request and at least one resend inside the grace"
    from engine.refresh import connection_refresh

    assert connection_refresh(conn.pk, reason="manual", force=True).refreshed, "the stored refresh token is live"
    assert acme.counters()["rotated_reuses"] == 0
