"""Migration 0015 moves the engine's bookkeeping off the connection's row: every existing
connection gets its EngineState with the values it had, and going back restores them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

BEFORE = [("connections", "0014_refresh_later_answer_at")]
AFTER = [("connections", "0015_engine_state")]


def _latest() -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_an_existing_database_upgrades_with_its_engine_values_kept_and_downgrades_back(user):
    now = timezone.now().replace(microsecond=0)
    values = {
        "next_check_at": now + timedelta(seconds=42),
        "lease_until": now + timedelta(seconds=90),
        "lease_owner": "host:1:abc",
        "last_check_at": now - timedelta(seconds=18),
        "last_success_at": now - timedelta(minutes=5),
        "consecutive_failures": 3,
        "retry_attempt": 2,
        "last_error_category": "network",
        "last_error_message": "The broker did not answer.",
        "last_latency_ms": 123,
        "health_score": 67,
        "quality": "poor",
    }
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps.get_model("connections", "Connection")
        kept = old.objects.create(
            user_id=user.pk, broker_slug="sandbox", account_id="M-1", status="degraded", environment="live", **values
        )
        fresh = old.objects.create(user_id=user.pk, broker_slug="sandbox", account_id="M-2", status="connected")
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)

        # The models as of 0015 (the engine's models have since moved to the engine app).
        Connection = executor.loader.project_state(AFTER).apps.get_model("connections", "Connection")
        upgraded = Connection.objects.select_related("engine_state").get(pk=kept.pk)
        assert {name: getattr(upgraded.engine_state, name) for name in values} == values
        assert upgraded.status == "degraded"
        assert Connection.objects.get(pk=fresh.pk).engine_state.health_score is None

        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(BEFORE)
        old = executor.loader.project_state(BEFORE).apps.get_model("connections", "Connection")
        downgraded = old.objects.get(pk=kept.pk)
        assert {name: getattr(downgraded, name) for name in values} == values
    finally:
        _latest()


def test_inactive_connections_lose_their_next_check_on_upgrade_and_get_one_back_on_downgrade(user):
    """engine 0003: a connection the sweep does not check keeps no next check (so no claim reads its
    row); going back gives each one the moment it left the checked set, as NOT NULL wants."""
    before, after = [("engine", "0002_engine_table_names")], [("engine", "0003_enginestate_next_check_nullable")]
    now = timezone.now().replace(microsecond=0)
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        apps = executor.loader.project_state(before).apps
        old, state = apps.get_model("connections", "Connection"), apps.get_model("engine", "EngineState")
        rows = {}
        for status in ("connected", "degraded", "disconnected", "needs_reauth", "failed"):
            conn = old.objects.create(
                user_id=user.pk, broker_slug="sandbox", account_id=status, status=status,
                status_changed_at=now - timedelta(hours=1),
            )  # fmt: skip
            state.objects.create(connection=conn, next_check_at=now - timedelta(days=3))
            rows[status] = conn.pk
        executor = MigrationExecutor(connection)
        executor.migrate(after)

        from engine.models import EngineState

        upgraded = dict(EngineState.objects.filter(pk__in=rows.values()).values_list("pk", "next_check_at"))
        assert {status: upgraded[pk] for status, pk in rows.items()} == {
            "connected": now - timedelta(days=3),
            "degraded": now - timedelta(days=3),
            "disconnected": None,
            "needs_reauth": None,
            "failed": None,
        }

        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(before)
        state = executor.loader.project_state(before).apps.get_model("engine", "EngineState")
        downgraded = dict(state.objects.filter(pk__in=rows.values()).values_list("pk", "next_check_at"))
        assert downgraded[rows["connected"]] == now - timedelta(days=3)
        assert downgraded[rows["disconnected"]] == now - timedelta(hours=1)
    finally:
        _latest()
