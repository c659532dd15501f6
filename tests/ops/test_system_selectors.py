"""The system status page's reads (issue 25: ops/views_system.py calls selectors and renders):
engine/selectors.py for the engine's data, ops/selectors.py for the page's rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from brokers.models import BrokerApp
from connections.models import Connection, ConnectionStatus
from engine.models import CheckTally, CircuitBreaker
from engine.selectors import check_counts_since, refresh_awaiting_answer_by_app
from ops.selectors import breaker_rows, refresh_token_rows

pytestmark = pytest.mark.django_db


def _tally(slug, minute, *, checks, passed, writer="w1"):
    CheckTally.objects.create(broker_slug=slug, minute=minute, writer=writer, checks=checks, passed=passed)


def test_the_last_hours_checks_add_up_per_broker_and_older_ones_do_not_count():
    now = timezone.now().replace(second=0, microsecond=0)
    _tally("sandbox", now - timedelta(minutes=5), checks=4, passed=3)
    _tally("sandbox", now - timedelta(minutes=5), checks=6, passed=6, writer="w2")
    _tally("sandbox", now - timedelta(hours=2), checks=100, passed=0)
    assert check_counts_since(now - timedelta(hours=1)) == {"sandbox": {"checks": 10, "passed": 9}}
    row = next(row for row in breaker_rows(now) if row["slug"] == "sandbox")
    assert row["checks"] == 10 and row["error_rate"] == "10.0%" and row["state"] == "Closed"


def test_a_broker_with_an_open_circuit_and_no_checks():
    CircuitBreaker.objects.create(broker_slug="sandbox", state="open", last_error_message="HTTP 503")
    row = next(row for row in breaker_rows(timezone.now()) if row["slug"] == "sandbox")
    assert (row["state"], row["state_key"], row["last_error"]) == ("Open", "open", "HTTP 503")
    assert row["error_rate"] == "no checks" and row["checks"] == 0


def test_refreshes_awaiting_an_answer_count_active_connections_only(user):
    app = BrokerApp.objects.create(broker_slug="sandbox", environment="paper", client_id="c")
    sent = timezone.now()
    for n, status in enumerate([ConnectionStatus.CONNECTED, ConnectionStatus.DEGRADED, ConnectionStatus.DISCONNECTED]):
        Connection.objects.create(
            user=user, broker_slug="sandbox", account_id=str(n), broker_app=app, status=status, refresh_sent_at=sent
        )
    Connection.objects.create(user=user, broker_slug="sandbox", account_id="quiet", broker_app=app)
    assert refresh_awaiting_answer_by_app() == {app.pk: 2}
    (row,) = [row for row in refresh_token_rows() if row["slug"] == "sandbox"]
    assert row["awaiting"] == 2 and row["environment"] == app.get_environment_display()
