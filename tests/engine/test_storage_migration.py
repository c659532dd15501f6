"""Migration 0010 carries the old check history over: finished days from hourly rollups (and raw
rows no rollup covers) become UptimeDay rows, the last day of raw rows fills each check log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from engine.checkstore import rings_for
from engine.health import connection_uptime_counts
from engine.ring import hours_unpack

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

BEFORE = [("connections", "0009_oauthstateuse")]
AFTER = [("connections", "0010_check_storage")]


def test_the_old_history_is_carried_into_uptime_days_and_check_logs(user):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Connection = old.get_model("connections", "Connection")
    CheckResult = old.get_model("connections", "CheckResult")
    UptimeRollup = old.get_model("connections", "UptimeRollup")
    now = timezone.now()
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        conn = Connection.objects.create(
            user_id=user.pk, broker_slug="sandbox", account_id="M-1", status="connected", environment="live"
        )
        # Three days ago at 10:00: a rollup (and its raw rows, not counted twice); at 11:00 raw
        # rows only (the rollup missed); the last 90 minutes: raw rows.
        three_days = today - timedelta(days=3)
        UptimeRollup.objects.create(
            connection=conn, hour=three_days + timedelta(hours=10), checks=60, successes=57,
            latency_sum_ms=57 * 50, latency_count=57, latency_max_ms=90,
        )  # fmt: skip
        rows = [
            CheckResult(connection=conn, checked_at=three_days + timedelta(hours=10, minutes=i), ok=True, latency_ms=50)
            for i in range(60)
        ]
        rows += [
            CheckResult(connection=conn, checked_at=three_days + timedelta(hours=11, minutes=i), ok=i % 2 == 0)
            for i in range(10)
        ]
        rows += [
            CheckResult(connection=conn, checked_at=now - timedelta(minutes=90 - i), ok=i != 3, latency_ms=40 + i)
            for i in range(90)
        ]
        CheckResult.objects.bulk_create(rows)

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    from connections.models import Connection as Current
    from engine.models import UptimeDay

    day = UptimeDay.objects.get(connection_id=conn.pk, day=three_days.date())
    assert (day.checks, day.passed, day.latency_max_ms) == (70, 62, 90)
    hours = hours_unpack(day.hours)
    assert (hours[10].checks, hours[10].passed, hours[11].checks, hours[11].passed) == (60, 57, 10, 5)
    ring = rings_for([conn.pk])[conn.pk]
    assert len(ring.checks) == 60 and ring.checks[-1].latency_ms == 129
    current = Current.objects.get(pk=conn.pk)
    # The last 90 minutes were all replayed into the log's hours (one failure among them).
    passed, checks = connection_uptime_counts(current, hours=3, now=now)
    assert (passed, checks) == (89, 90)
    passed, checks = connection_uptime_counts(current, hours=24 * 7, now=now)
    assert (passed, checks) == (89 + 62, 90 + 70)


def test_the_migrations_frozen_ring_packs_like_the_engines():
    """0010 uses a frozen copy of the ring (connections/migrations/_ring_0010.py), not engine/ring.py:
    today both write the same bytes for the same checks (kept and added, over a day's end)."""
    from connections.migrations import _ring_0010 as frozen
    from engine import ring as live

    start = datetime(2026, 12, 5, 21, 17, 3, 250_000, tzinfo=UTC)
    checks = [
        (start + timedelta(minutes=7 * i), i % 5 != 0, None if i % 11 == 0 else 30 + i, 503 if i % 5 == 0 else 200,
         "" if i % 5 else ["network", "broker_fault", "nonsense"][i % 3])
        for i in range(400)  # 46 hours: two day ends, more checks than RECENT
    ]  # fmt: skip
    rings = {}
    for module in (frozen, live):
        ring = module.Ring()
        days = []
        for n, fields in enumerate(checks):
            check = module.Check(*fields)
            if n < 20:
                ring.keep(check)
            else:
                days += [(d.day, d.hours, d.totals.checks, d.totals.passed) for d in ring.add(check)]
        slots = [module.HourCounts(n, n // 2, n * 40, n // 2, n + 90) for n in range(24)]
        rings[module] = (ring.encode(), days, module.hours_pack(slots), module.epoch_hour(start))
    assert len(rings[frozen][0]) == frozen.SIZE == live.SIZE
    assert rings[frozen] == rings[live]
