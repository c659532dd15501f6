"""engine.services against the sandbox over HTTP: fresh tokens, calls, 401 and 429 handling."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from common.ratelimit import rate_limit_hit
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from engine.models import CheckResult
from engine.services import (
    ConnectionUnavailable,
    NeedsReauthentication,
    RateLimited,
    connection_access_token,
    connection_call,
)
from tests.engine.history import stored_checks
from tests.support import ROOT, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_fresh_token_is_handed_out_without_a_refresh(world):
    conn = world.connection()
    before = world.counters()
    token = connection_access_token(conn.pk)
    assert token == conn.access_token
    assert world.counters()["token_requests"] == before["token_requests"]


def test_a_token_near_expiry_is_refreshed_once_first(world):
    conn = world.connection(expires_in=30)
    old = conn.access_token
    before = world.counters()
    token = connection_access_token(conn.pk)
    assert token != old
    assert world.counters()["refreshes"] - before["refreshes"] == 1
    assert connection_access_token(conn.pk) == token  # now fresh: no second refresh
    assert world.counters()["refreshes"] - before["refreshes"] == 1


def test_a_dead_grant_raises_needs_reauthentication_never_a_stale_token(world):
    conn = world.connection(expires_in=30)
    world.faults(refresh_invalid_grant=True)
    with pytest.raises(NeedsReauthentication, match="needs re-authentication") as caught:
        connection_access_token(conn.pk)
    assert conn.access_token not in str(caught.value)
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.NEEDS_REAUTH
    # Later calls say the same without asking the broker again.
    before = world.counters()
    with pytest.raises(NeedsReauthentication):
        connection_access_token(conn.pk)
    assert world.counters()["token_requests"] == before["token_requests"]


def test_a_disconnected_connection_has_no_token(world):
    conn = world.connection(status=ConnectionStatus.DISCONNECTED)
    with pytest.raises(ConnectionUnavailable, match="disconnected"):
        connection_access_token(conn.pk)


def test_a_call_reaches_the_account_endpoint_and_stays_out_of_the_heartbeats_history(world):
    conn = world.connection()
    answer = connection_call(conn.pk, "GET", "v1/account")
    assert answer.status == 200 and answer.body["id"] and answer.latency_ms is not None
    # Integration calls are not checks (tests/engine/test_python_api_apart.py).
    assert stored_checks(conn) == []
    assert not CheckResult.objects.filter(connection=conn).exists()


def test_a_401_gets_one_refresh_and_one_retry(world):
    conn = world.connection()
    world.expire_access_tokens()
    before = world.counters()
    answer = connection_call(conn.pk, "GET", "v1/account")
    after = world.counters()
    assert answer.status == 200
    assert after["account_calls"] - before["account_calls"] == 2
    assert after["refreshes"] - before["refreshes"] == 1
    assert conn.events.filter(kind=ConnectionEvent.Kind.REFRESHED).count() == 1


def test_a_401_with_a_dead_grant_raises_needs_reauthentication(world):
    conn = world.connection()
    world.sandbox.revoke_all(world.client_id)
    with pytest.raises(NeedsReauthentication):
        connection_call(conn.pk, "GET", "v1/account")
    conn.refresh_from_db()
    # What the broker said about the grant counts: the person must reconnect.
    assert conn.status == ConnectionStatus.NEEDS_REAUTH
    assert conn.events.filter(to_status=ConnectionStatus.NEEDS_REAUTH).exists()


def test_a_429_pauses_every_caller_for_its_retry_after(world):
    conn = world.connection()
    world.faults(rate_limit=600)
    answer = connection_call(conn.pk, "GET", "v1/account", max_wait=1)
    assert answer.status == 429 and answer.headers.get("Retry-After") == "600"
    world.faults(rate_limit=0)
    before = world.counters()["account_calls"]
    with pytest.raises(RateLimited) as caught:
        connection_call(conn.pk, "GET", "v1/account", max_wait=1)
    assert 590 < caught.value.retry_after <= 600
    assert world.counters()["account_calls"] == before  # held back, the broker was not asked


def test_paths_outside_the_api_base_are_refused(world):
    conn = world.connection()
    for path in ("http://169.254.169.254/", "//evil.example/x", "v1/../../oauth/token"):
        with pytest.raises(ValueError, match="relative"):
            connection_call(conn.pk, "GET", path)


def test_the_rate_limit_is_shared_across_processes():
    """Two processes count in one Redis window: together they get exactly the limit."""
    key = f"test-shared-{time.time_ns()}"
    script = (
        "import django, sys; django.setup()\n"
        "from common.ratelimit import rate_limit_hit\n"
        f"print(sum(rate_limit_hit({key!r}, limit=10, per_seconds=60) == 0 for _ in range(8)))\n"
    )
    env = subprocess_env(DJANGO_SETTINGS_MODULE="config.settings_test")
    procs = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    allowed = sum(int(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in procs)
    mine = sum(rate_limit_hit(key, limit=10, per_seconds=60) == 0 for _ in range(4))
    assert allowed + mine == 10


def test_questrade_calls_go_to_the_api_server_of_the_token(user):
    from connections.models import Connection
    from engine.services import connection_api_url

    conn = Connection(user=user, broker_slug="questrade", environment="live",
                      token_meta={"api_server": "https://api05.iq.questrade.com"})
    assert connection_api_url(conn, "v1/accounts") == "https://api05.iq.questrade.com/v1/accounts"
    conn.token_meta = {"api_server": "https://api07.iq.questrade.com/"}  # a refresh moved it
    assert connection_api_url(conn, "/v1/accounts") == "https://api07.iq.questrade.com/v1/accounts"


def test_an_unreadable_token_fails_that_connection_alone_with_a_precise_message(world):
    broken, healthy = world.connection(), world.connection()
    Connection.objects.filter(pk=broken.pk).update(access_token_sealed="v1:t1:not-a-ciphertext")
    with pytest.raises(ConnectionUnavailable, match="cannot be decrypted"):
        connection_access_token(broken.pk)
    with pytest.raises(ConnectionUnavailable, match="cannot be decrypted"):
        connection_call(broken.pk, "GET", "v1/account")
    assert connection_call(healthy.pk, "GET", "v1/account").status == 200
