"""The docs' minimal-YAML broker on the strict sandbox, for the rotation tests: its world
(connections, numbers, what the page says) and the beat's tick run in this process."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from brokers.models import BrokerApp
from connections.models import Connection, ConnectionStatus
from engine.sweep import sweep_run, sweep_tick
from tests.brokers.test_docs_examples import example
from tests.engine.conftest import EngineWorld, time_passes
from tests.support import wait_for

SLUG = "acme"


def minimal_yaml(sandbox_url: str) -> str:
    """The docs' minimal example, only its hosts replaced by the sandbox's."""
    text = example("minimal-oauth2")
    assert "rotates_refresh_token" not in text
    return text.replace("https://auth.acme.example", sandbox_url).replace("https://api.acme.example", sandbox_url)


class AcmeWorld(EngineWorld):
    def connection(self, *, expires_in: float | None = None, **fields) -> Connection:
        from connections.broker_client import profile_for
        from connections.tokens import connection_apply_token_response

        self._n += 1
        token = self.tokens()
        profile = profile_for(SLUG, "live")
        conn = Connection(
            user=self.user,
            broker_slug=SLUG,
            broker_app=self.app,
            environment="live",
            account_id=f"acct-{self._n}",
            status=ConnectionStatus.CONNECTED,
        )
        connection_apply_token_response(connection=conn, profile=profile, token=token, first_grant=True)
        conn.last_check_at = conn.last_success_at = timezone.now()
        if expires_in is not None:
            # What brokerlink believes: an hour-long token near its end (due for a refresh).
            conn.access_expires_at = timezone.now() + timedelta(seconds=expires_in)
            conn.last_refreshed_at = conn.access_expires_at - timedelta(hours=1)
            conn.grant_started_at = conn.last_refreshed_at
        conn.next_check_at = timezone.now() - timedelta(seconds=1)
        for name, value in fields.items():
            setattr(conn, name, value)
        conn.save()
        return conn

    def grants_lost(self) -> int:
        from sandbox.models import SandboxGrant

        return SandboxGrant.objects.filter(client__client_id=self.client_id, revoked_at__isnull=False).count()

    def report(self, label: str, conn: Connection, **extra) -> dict:
        counters = self.counters()
        numbers = {
            "refresh tokens reused": counters["rotated_reuses"],
            "grants lost": self.grants_lost(),
            "refreshes answered by the broker": counters["refreshes"],
            **extra,
            "page says": page_says(self.user, conn),
        }
        print(f"\n[{label}] " + "; ".join(f"{k}: {v}" for k, v in numbers.items()))
        return numbers


def page_says(user, conn: Connection) -> str:
    """The badge and the sentence of the connection's own page, as its owner reads them."""
    client = Client()
    client.force_login(user)
    page = client.get(reverse("connections:detail", args=[conn.pk])).content.decode()
    badge = re.search(r'data-status="[^"]+">([^<]+)<', page)
    sentence = re.search(r'data-field="sentence">(.*?)</p>', page, flags=re.S)
    text = re.sub(r"<[^>]+>", "", sentence.group(1)) if sentence else ""
    return f"{html.unescape(badge.group(1)) if badge else '?'}: {' '.join(html.unescape(text).split())}"


def acme_make(sandbox_server, settings, user, tmp_path, *, yaml_extra: str = "", **client_fields) -> AcmeWorld:
    """The minimal YAML broker (plus `yaml_extra` lines) on a strict rotating sandbox client
    with 60 s access tokens (plus `client_fields`)."""
    path = tmp_path / "brokers.yaml"
    path.write_text(minimal_yaml(sandbox_server.url) + yaml_extra)
    settings.BROKERS_FILE = str(path)
    settings.ENGINE_HTTP_TIMEOUT = 2  # heartbeats give up fast: many requests queue in a stall
    settings.ENGINE_REFRESH_WAIT_SECONDS = 0.5
    client = sandbox_server.create_client(rotate_refresh=True, access_ttl=60, **client_fields)
    app = BrokerApp(broker_slug=SLUG, environment="live", client_id=client["client_id"])
    app.client_secret = client["client_secret"]
    app.save()
    return AcmeWorld(sandbox_server, client, app, user)


@pytest.fixture(name="acme")
def acme_fixture(sandbox_server, settings, user, tmp_path):
    """The minimal YAML broker on a strict rotating sandbox client (60 s access tokens)."""
    return acme_make(sandbox_server, settings, user, tmp_path)


def tick() -> None:
    """What the beat does every cycle and what its lanes do, in this process."""
    run, lanes = sweep_tick()
    deadline = (timezone.now() + timedelta(seconds=30)).timestamp()
    for _ in range(lanes):
        sweep_run(run_id=run.pk, deadline=deadline)


def ticks_until(predicate, *, timeout: float, message: str) -> None:
    """Ticks, a cycle's worth of time passing between them, until `predicate()` holds."""

    def step():
        time_passes(61)
        tick()
        return predicate()

    wait_for(step, timeout=timeout, interval=0.05, what=message)


def row(conn: Connection) -> Connection:
    return Connection.objects.get(pk=conn.pk)
