"""Engine test helpers: a sandbox client + BrokerApp, connections holding real sandbox tokens
(authorization code + PKCE over HTTP), a Celery worker pointed at the sandbox, and a
"time machine" that moves the engine's stored times back instead of sleeping."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.db.models import F
from django.utils import timezone

from brokers.models import BrokerApp
from connections.models import Connection, ConnectionStatus
from engine.models import CircuitBreaker, EngineState
from tests.fixtures.sandbox import pkce_pair

FAST_ENGINE_ENV = {
    "BROKERLINK_ENGINE_LEASE_SECONDS": "3",
    "BROKERLINK_ENGINE_HTTP_TIMEOUT": "5",
    "BROKERLINK_ENGINE_BATCH_SIZE": "50",
}


class EngineWorld:
    def __init__(self, sandbox, client: dict, app: BrokerApp, user):
        self.sandbox = sandbox
        self.client = client
        self.app = app
        self.user = user
        self._n = 0

    @property
    def client_id(self) -> str:
        return self.client["client_id"]

    def counters(self) -> dict:
        return self.sandbox.counters(self.client_id)

    def faults(self, **faults) -> dict:
        return self.sandbox.set_faults(self.client_id, **faults)

    def expire_access_tokens(self) -> None:
        """The broker's clock passes every access token it issued so far (the sandbox server
        shares the test database); brokerlink still believes them valid."""
        from sandbox.models import SandboxToken

        SandboxToken.objects.filter(client__client_id=self.client_id).update(
            access_expires_at=timezone.now() - timedelta(seconds=1)
        )

    def tokens(self) -> dict:
        """A fresh grant from the sandbox: authorize as the demo user, exchange the code."""
        verifier, challenge = pkce_pair()
        result = self.sandbox.browser().authorize(self.client, code_challenge=challenge)
        assert result.code, result
        response = requests.post(
            f"{self.sandbox.url}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": result.code,
                "redirect_uri": self.client["redirect_uris"][0],
                "code_verifier": verifier,
            },
            auth=(self.client_id, self.client["client_secret"]),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def connection(self, *, expires_in: float | None = None, **fields) -> Connection:
        from connections.broker_client import profile_for
        from connections.tokens import connection_apply_token_response

        self._n += 1
        token = self.tokens()
        if expires_in is not None:
            token["expires_in"] = expires_in  # what brokerlink believes: "expires soon"
        conn = Connection(
            user=self.user,
            broker_slug="sandbox",
            broker_app=self.app,
            environment="live",
            account_id=f"acct-{self._n}",
            status=ConnectionStatus.CONNECTED,
        )
        profile = profile_for("sandbox", "live")
        connection_apply_token_response(connection=conn, profile=profile, token=token, first_grant=True)
        if expires_in is not None:
            token_was_issued_long_ago(conn, profile)
        conn.next_check_at = timezone.now() - timedelta(seconds=1)
        for name, value in fields.items():
            setattr(conn, name, value)
        conn.save()
        return conn


def token_was_issued_long_ago(conn: Connection, profile) -> None:
    """An access token "expiring in 30 s" is a normal-lifetime token near its end: the refresh
    margin is relative to the lifetime (BrokerProfile.refresh_margin), so say when it was issued."""
    lifetime = timedelta(seconds=profile.token_rules.access_ttl or 3600)
    conn.last_refreshed_at = conn.access_expires_at - lifetime
    conn.grant_started_at = min(conn.grant_started_at, conn.last_refreshed_at)


def time_passes(seconds: float) -> None:
    """Move every stored engine time back by `seconds`: the same as waiting, minus the wait."""
    delta = timedelta(seconds=seconds)
    EngineState.objects.update(next_check_at=F("next_check_at") - delta)
    EngineState.objects.exclude(lease_until=None).update(lease_until=F("lease_until") - delta)
    CircuitBreaker.objects.exclude(next_probe_at=None).update(next_probe_at=F("next_probe_at") - delta)


def world_on(sandbox, settings, user) -> EngineWorld:
    settings.SANDBOX_BASE_URL = sandbox.url
    client = sandbox.create_client(rotate_refresh=True)
    app = BrokerApp(broker_slug="sandbox", environment="live", client_id=client["client_id"])
    app.client_secret = client["client_secret"]
    app.save()
    return EngineWorld(sandbox, client, app, user)


@pytest.fixture
def world(shared_sandbox, settings, user):
    """The engine's world on the session's sandbox process: faults and counters belong to the
    test's own sandbox client, so tests do not see each other's. A test that pauses, stops or
    restarts the broker process takes `own_world` instead."""
    return world_on(shared_sandbox, settings, user)


@pytest.fixture
def own_world(sandbox_server, settings, user):
    """`world` on a sandbox process of the test's own, which it may pause, stop and restart."""
    return world_on(sandbox_server, settings, user)


@pytest.fixture
def worker(world, celery_cluster):
    """start(workers=1) -> the cluster, with fast engine settings and the sandbox URL."""

    def start(workers: int = 1, concurrency: int = 1):
        env = {"SANDBOX_BASE_URL": world.sandbox.url, **FAST_ENGINE_ENV}
        return celery_cluster(workers=workers, beats=0, env=env, concurrency=concurrency)

    return start


def run_sweeps_via_worker(count: int = 1, *, timeout: float = 60, **options) -> None:
    """`count` heartbeat cycles on the running workers, the production way (beat's tick, its
    lanes): tests/engine/cycle.py `run_one_cycle`, which new tests should call directly.
    Engine options are the workers' settings (BROKERLINK_ENGINE_* in `worker`'s environment)."""
    from tests.engine.cycle import run_cycles

    if options:
        raise TypeError(f"cycles take engine options from the workers' environment, not {sorted(options)}")
    run_cycles(count, timeout=timeout)
