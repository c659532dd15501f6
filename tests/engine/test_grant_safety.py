"""What can lose a grant, tried for real: a stalled broker, a poisoned batch, malformed token
answers. Each test runs the engine in this process against real servers on 127.0.0.1 (the
standalone sandbox, stopped with SIGSTOP like a hung process, and a badly behaved broker)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from brokers.models import BrokerApp
from connections.errors import BrokerError
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.oauth_flow import PendingFlow
from connections.services.connect import connection_authorize_complete
from connections.services.failures import ConnectFailed
from connections.tokens import connection_apply_token_response
from engine.models import EngineState
from engine.refresh import connection_refresh
from engine.refresh_runner import refreshes_wait_idle
from engine.services import connection_check_now
from engine.sweep import sweep_run
from tests.engine.conftest import time_passes
from tests.fixtures.fake_broker import SLUG as FAKE
from tests.support import wait_for

COMPRESSED = {
    # The old failure: a 10 s read timeout, then the same refresh token again. Compressed 5x.
    "BROKER_READ_TIMEOUT_SECONDS": 2,
    "ENGINE_HTTP_TIMEOUT": 2,
    "ENGINE_REFRESH_WAIT_SECONDS": 0.5,
    "ENGINE_REFRESH_DEADLINE_SECONDS": 40,
}


@pytest.fixture
def compressed(settings):
    for name, value in COMPRESSED.items():
        setattr(settings, name, value)


def test_a_broker_stalled_past_the_old_timeout_and_resumed_keeps_the_grant(own_world, compressed):
    world = own_world  # pauses or stops the broker process: a sandbox of its own
    conn = world.connection(expires_in=200)  # inside the refresh margin, the access token still lives
    before = world.counters()
    world.sandbox.pause()
    try:
        stall_started = time.monotonic()
        sweeps = 0
        # Sweeps keep coming during the stall (the old code resent the refresh token at each).
        while time.monotonic() - stall_started < 9:  # > 4x the 2 s timeout that used to end it
            time_passes(61)
            run = sweep_run()
            assert run.finished_at is not None
            sweeps += 1
        conn.refresh_from_db()
        assert conn.refresh_sent_at is not None and conn.refresh_claim_owner, "one refresh is out, claimed"
    finally:
        world.sandbox.resume()
    assert sweeps >= 3
    # The queued request is answered on resume; its rotated token is stored.
    assert refreshes_wait_idle(timeout=30)
    conn.refresh_from_db()
    assert conn.refresh_claim_owner == "" and conn.refresh_sent_at is None
    time_passes(3600)
    sweep_run()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.CONNECTED, conn.last_error_message
    after = world.counters()
    assert after["rotated_reuses"] == 0
    assert after["refreshes"] - before["refreshes"] == 1, "exactly one rotation for the one due refresh"
    # The rotated refresh token stored is the live one: the next refresh works.
    assert connection_refresh(conn.pk, reason="manual", force=True).refreshed
    assert world.counters()["rotated_reuses"] == 0


def _a_lost_refresh_the_broker_processed(world):
    """A connection whose refresh got no answer (the broker was stopped) although the broker
    processed it on resume: it rotated the refresh token, and the answer is lost."""
    conn = world.connection(expires_in=200)
    world.sandbox.pause()
    try:
        with pytest.raises(Exception) as raised:
            connection_refresh(conn.pk, reason="expiring")
        assert "may or may not have used the refresh token" in str(raised.value)
        # Asked again at once (another sweep, Check now): nothing is sent.
        result = connection_refresh(conn.pk, reason="expiring")
        assert result.reason == "outcome_unknown" and not result.refreshed
    finally:
        world.sandbox.resume()
    event = ConnectionEvent.objects.filter(connection=conn, kind=ConnectionEvent.Kind.REFRESH_FAILED).latest("pk")
    assert "tries again after" in event.message
    # The stalled server still processed the abandoned request (it rotated the token): a
    # resend now would be reuse. No time ends the wait; the broker answering a heartbeat sent
    # after the refresh does.
    wait_for(lambda: world.counters()["refreshes"] >= 1, timeout=20, what="the queued refresh processed")
    assert world.counters()["rotated_reuses"] == 0
    assert connection_refresh(conn.pk, reason="expiring").reason == "outcome_unknown"
    assert world.counters()["rotated_reuses"] == 0
    return conn


def test_an_unanswered_refresh_is_not_resent_until_it_can_no_longer_be_answered(own_world, compressed, settings):
    world = own_world  # pauses or stops the broker process: a sandbox of its own
    settings.ENGINE_REFRESH_DEADLINE_SECONDS = 2  # give up on the answer quickly
    conn = _a_lost_refresh_the_broker_processed(world)
    # Check now's own refresh of the expiring token runs on the refresh pool before its heartbeat.
    # The batch waits for it to finish (it only reads the row, nothing is sent), so it decides
    # before the heartbeat's answer exists; the next test pins the other order, which a batch
    # that stopped waiting (this file's compressed wait, a loaded machine) also allows.
    settings.ENGINE_REFRESH_WAIT_SECONDS = 30
    assert connection_check_now(Connection.objects.get(pk=conn.pk)).ok, "checked with the access token it has"
    assert world.counters()["rotated_reuses"] == 0
    # That heartbeat was sent after the lost refresh and answered: the lost refresh can no longer
    # be answered. Then brokerlink tries once on purpose and says what happened.
    with pytest.raises(BrokerError) as raised:
        connection_refresh(conn.pk, reason="expiring")
    assert raised.value.needs_reauth
    assert "earlier refresh that got no answer probably used it" in str(raised.value)
    _spent_twice_in_all(world, conn)


def _spent_twice_in_all(world, conn) -> None:
    """The refresh token was spent twice in all, once lost and once on purpose, and the history
    says so."""
    assert refreshes_wait_idle(timeout=30)
    counters = world.counters()
    assert (counters["refreshes"], counters["rotated_reuses"]) == (1, 1), counters
    messages = list(ConnectionEvent.objects.filter(connection=conn).values_list("message", flat=True))
    assert sum("sending the refresh again" in m for m in messages) == 1, messages
    assert any("earlier refresh that got no answer probably used it" in m for m in messages), messages


def test_the_checks_own_refresh_may_be_the_one_deliberate_resend(own_world, compressed, settings, monkeypatch):
    world = own_world  # pauses or stops the broker process: a sandbox of its own
    settings.ENGINE_REFRESH_DEADLINE_SECONDS = 2
    conn = _a_lost_refresh_the_broker_processed(world)
    # The check's own refresh is held back until the check has ended (a loaded machine): the batch
    # stops waiting for it, checks with the token it has, and records the heartbeat's answer first.
    from engine import refresh_runner

    check_done = threading.Event()
    real_refresh = refresh_runner.connection_refresh

    def held_back(*args, **kwargs):
        assert check_done.wait(timeout=30)
        return real_refresh(*args, **kwargs)

    monkeypatch.setattr(refresh_runner, "connection_refresh", held_back)
    try:
        assert connection_check_now(Connection.objects.get(pk=conn.pk)).ok, "checked with the access token it has"
        assert world.counters()["rotated_reuses"] == 0, "nothing is sent again before the heartbeat's answer"
        assert Connection.objects.get(pk=conn.pk).refresh_later_answer_at is not None, "the answer is recorded"
    finally:
        check_done.set()  # then the check's own refresh reads the row: it is the one deliberate resend
    _spent_twice_in_all(world, conn)
    # Nobody waits for that refresh's result any more: it tells the person itself.
    row = Connection.objects.get(pk=conn.pk)
    assert row.status == ConnectionStatus.NEEDS_REAUTH, row.last_error_message
    assert "earlier refresh that got no answer probably used it" in row.last_error_message
    # Later sweeps and refreshes send nothing more with that refresh token.
    time_passes(3600)
    sweep_run()
    assert connection_refresh(conn.pk, reason="expiring").reason == "inactive"
    assert refreshes_wait_idle(timeout=30)
    assert world.counters()["rotated_reuses"] == 1


def _poison_world(world, fake_broker, brokers_file_path, settings):
    """100 due connections: 95 healthy sandbox ones and five poisoned rows."""
    settings.BROKERS_FILE = str(brokers_file_path)
    fake_app = BrokerApp(broker_slug=FAKE, environment="live", client_id="fake-client")
    fake_app.client_secret = "fake-secret"
    fake_app.save()
    shared = world.tokens()
    from connections.broker_client import profile_for

    sandbox_profile, fake_profile = profile_for("sandbox", "live"), profile_for(FAKE, "live")
    now = timezone.now()

    def row(profile, app, token, **fields) -> Connection:
        conn = Connection(
            user=world.user,
            broker_slug=profile.slug,
            broker_app=app,
            environment="live",
            account_id=f"acct-{uuid.uuid4().hex[:8]}",
            status=ConnectionStatus.CONNECTED,
        )
        connection_apply_token_response(connection=conn, profile=profile, token=token, first_grant=True)
        conn.next_check_at = now - timedelta(seconds=5)
        for name, value in fields.items():
            setattr(conn, name, value)
        conn.save()
        return conn

    healthy = [row(sandbox_profile, world.app, shared) for _ in range(95)]
    poison = {}
    poison["crlf"] = row(sandbox_profile, world.app, shared)
    Connection.objects.filter(pk=poison["crlf"].pk).update(token_type="Bearer\r\nX-Injected: 1")
    poison["cipher"] = row(sandbox_profile, world.app, shared)
    sealed = poison["cipher"].access_token_sealed
    Connection.objects.filter(pk=poison["cipher"].pk).update(access_token_sealed=sealed[:-12] + "A" * 12)
    html_client = world.sandbox.create_client(rotate_refresh=True)
    html_app = BrokerApp(broker_slug="sandbox", environment="paper", client_id=html_client["client_id"])
    html_app.client_secret = html_client["client_secret"]
    html_app.save()
    from tests.fixtures.sandbox import pkce_pair

    verifier, challenge = pkce_pair()
    code = world.sandbox.browser().authorize(html_client, code_challenge=challenge).code
    import requests

    html_token = requests.post(
        f"{world.sandbox.url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": html_client["redirect_uris"][0],
            "code_verifier": verifier,
        },
        auth=(html_client["client_id"], html_client["client_secret"]),
        timeout=10,
    ).json()
    poison["html"] = row(sandbox_profile, html_app, html_token)
    world.sandbox.set_faults(html_client["client_id"], html_errors=True)
    fake_broker.answers["refresh:rt-absurd"] = {
        "access_token": "fake-access-2",
        "refresh_token": "rt-absurd-2",
        "token_type": "Bearer",
        "expires_in": 1e20,
        "refresh_token_expires_in": "soon",
    }
    poison["absurd"] = row(
        fake_profile,
        fake_app,
        {"access_token": "fake-access-1", "refresh_token": "rt-absurd", "expires_in": 30},
        last_refreshed_at=now - timedelta(seconds=3570),  # an hour-long token with 30 s left: due
    )
    poison["closed"] = row(
        fake_profile, fake_app, {"access_token": "close-me", "refresh_token": "rt-closed", "expires_in": 3600}
    )
    return healthy, poison


def test_poison_rows_fail_alone_and_the_rest_of_the_batch_is_checked(world, fake_broker, tmp_path, settings):
    path = tmp_path / "brokers.yaml"
    path.write_text(fake_broker.yaml())
    healthy, poison = _poison_world(world, fake_broker, path, settings)
    run = sweep_run(batch_size=100)
    assert refreshes_wait_idle(timeout=30)  # the absurd row's refresh may finish after its batch
    assert run.finished_at is not None and run.claimed == 100 and run.batches == 1
    assert run.checked == 100, (run.checked, run.deferred)
    assert not EngineState.objects.exclude(lease_owner="").exists(), "no lease left behind"
    states = dict(Connection.objects.filter(pk__in=[c.pk for c in healthy]).values_list("pk", "status"))
    assert set(states.values()) == {ConnectionStatus.CONNECTED}
    assert EngineState.objects.filter(pk__in=[c.pk for c in healthy], last_check_at__isnull=True).count() == 0

    def row(name):
        return Connection.objects.get(pk=poison[name].pk)

    assert "stored token type is malformed" in row("crlf").last_error_message
    assert "cannot open this connection's stored tokens" in row("cipher").last_error_message
    assert "HTML" in row("html").last_error_message
    assert "closed" in row("closed").last_error_message or "could not be reached" in row("closed").last_error_message
    for name in ("crlf", "cipher", "html", "closed"):
        assert row(name).status == ConnectionStatus.DEGRADED, name
    # The absurd lifetimes were not stored as sent: the profile's documented lifetime applies,
    # the rotated refresh token is kept, and the history says so.
    absurd = row("absurd")
    assert absurd.status == ConnectionStatus.CONNECTED, absurd.last_error_message
    assert absurd.refresh_token == "rt-absurd-2"
    assert timedelta(minutes=50) < absurd.access_expires_at - timezone.now() <= timedelta(hours=1)
    notes = ConnectionEvent.objects.filter(connection=absurd).values_list("message", flat=True)
    assert any("unusable expires_in" in n for n in notes)
    # A second sweep later still finishes and checks everyone again.
    time_passes(3600)
    again = sweep_run(batch_size=100)
    assert again.finished_at is not None and again.claimed == 100


def _flow(app, redirect_uri="http://127.0.0.1/cb") -> PendingFlow:
    return PendingFlow(
        state="s",
        slug=FAKE,
        app_id=str(app.pk),
        environment="live",
        purpose="connect",
        redirect_uri=redirect_uri,
        created_at=time.time(),
    )


@pytest.fixture
def fake_app(fake_broker, tmp_path, settings):
    path = tmp_path / "brokers.yaml"
    path.write_text(fake_broker.yaml())
    settings.BROKERS_FILE = str(path)
    app = BrokerApp(broker_slug=FAKE, environment="live", client_id="fake-client")
    app.client_secret = "fake-secret"
    app.save()
    return app


@pytest.mark.django_db
def test_absurd_lifetimes_at_connect_are_not_a_500_and_lose_nothing(fake_broker, fake_app, user):
    fake_broker.answers["code:c1"] = {
        "access_token": "fake-access-9",
        "refresh_token": "rt-9",
        "token_type": "bearer",
        "expires_in": 1e20,
        "refresh_token_expires_in": "soon",
    }
    outcome = connection_authorize_complete(user=user, flow=_flow(fake_app), code="c1")
    conn = outcome.connection
    assert conn.status == ConnectionStatus.CONNECTED and conn.refresh_token == "rt-9"
    assert conn.token_type == "Bearer"
    assert conn.access_expires_at - timezone.now() <= timedelta(hours=1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ({"token_type": "Bearer\r\nX-Evil: 1"}, "malformed token_type"),
        ({"token_type": "MAC"}, "can only use Bearer"),
        ({"access_token": "has space"}, "access token brokerlink cannot use"),
    ],
)
def test_unusable_tokens_at_connect_are_handed_back_with_a_precise_message(fake_broker, fake_app, user, answer, says):
    fake_broker.answers["code:c2"] = {"access_token": "fake-access-7", "refresh_token": "rt-7", **answer}
    with pytest.raises(ConnectFailed) as failed:
        connection_authorize_complete(user=user, flow=_flow(fake_app), code="c2")
    assert failed.value.code == "unexpected_response"
    assert says in failed.value.detail
    assert "rt-7" in fake_broker.revoked, "the refresh token issued was revoked"
    assert not Connection.objects.exists()
