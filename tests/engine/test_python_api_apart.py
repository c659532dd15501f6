"""A developer's mistake with the Python API fails the developer, not the person's connection.

From a shell whose SITE_URL (so SANDBOX_BASE_URL) points at no broker, connection_call
cannot reach it: the caller gets the error, and the connection's history (checks, uptime,
health score, status, failure rows, the broker's tallies behind the admins' alerts) is exactly
what the heartbeat made it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.errors import BrokerError
from connections.models import ConnectionStatus
from engine.checkstore import tallies_since
from engine.models import CheckResult, UptimeDay
from engine.services import connection_call
from engine.sweep import sweep_run
from tests.engine.conftest import time_passes
from tests.engine.history import stored_checks
from tests.support import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def history(conn) -> dict:
    conn.refresh_from_db()
    return {
        "checks": [(c.checked_at, c.ok) for c in stored_checks(conn)],
        "failures": CheckResult.objects.filter(connection=conn).count(),
        "uptime_days": list(UptimeDay.objects.filter(connection=conn).values_list("day", "checks", "passed")),
        "tallies": tallies_since(timezone.now() - timedelta(hours=1)),
        "status": conn.status,
        "health_score": conn.health_score,
        "last_error": conn.last_error_message,
    }


def test_a_shell_that_reaches_no_broker_leaves_the_connection_as_the_heartbeat_made_it(world, settings):
    conn = world.connection()
    for _ in range(2):
        time_passes(3600)
        sweep_run()
    before = history(conn)
    assert [ok for _, ok in before["checks"]] == [True, True] and before["status"] == ConnectionStatus.CONNECTED

    settings.SANDBOX_BASE_URL = f"http://127.0.0.1:{free_port()}/sandbox"  # SITE_URL of another port
    for _ in range(3):
        with pytest.raises(BrokerError) as raised:
            connection_call(conn.pk, "GET", "v1/account", max_wait=0)
        assert raised.value.category == "network"

    assert history(conn) == before


def test_the_brokers_errors_and_a_wrong_path_are_the_callers_answer_only(world):
    conn = world.connection()
    time_passes(3600)
    sweep_run()
    before = history(conn)

    assert connection_call(conn.pk, "GET", "v1/no-such-endpoint").status == 404
    world.faults(error_5xx_rate=1.0)
    assert connection_call(conn.pk, "GET", "v1/account", max_wait=0).status >= 500

    assert history(conn) == before
