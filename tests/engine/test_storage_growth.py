"""Database growth per healthy connection per day, measured on PostgreSQL (issue 14: at most 2 KB;
the figures, and what a CheckResult row per check cost: docs/engine.md#check-storage).

N connections are checked once a minute for a simulated day through the engine's own batch write
(`engine.batch_write.outcomes_write`, after a claim like the sweep's), with the hourly and daily
maintenance tasks at their times and VACUUM every minute (what autovacuum does here). Growth is
the size after the day minus the size after a four-hour warm-up, divided by N, of every table a
check writes: `pg_total_relation_size` (table, indexes, TOAST) of the check storage and the
other engine tables, `pg_table_size` (table and TOAST) of `connections_connection` and of
`engine_enginestate` (the row a check rewrites). The day crosses a UTC midnight, so each
connection also stores the day it left behind.

The EngineState `next_check_at` index is printed, not bounded: every check moves the
row's `next_check_at` forward (the sweep's claim and write, unchanged by the check storage), so
that B-tree take new keys at one end while vacuum empties pages at the other, and PostgreSQL
recycles an emptied index page only once no transaction in any database of the server is older
than its deletion: on a server shared with other work they swell for a while, on a quiet one
they stay flat (0 bytes at 100 connections here).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection as db

from engine.batch import BatchStats, Outcome
from engine.batch_write import outcomes_write
from engine.models import CheckLog, CheckResult, EngineState, UptimeDay
from engine.refresh import connection_profile
from engine.retention import checkresults_prune, checkresults_rollup
from tests.engine.history import stored_connection

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

N = int(os.environ.get("GROWTH_CONNECTIONS", "100"))
BOUND = 2048
TABLES = [
    "engine_checklog",
    "engine_uptimeday",
    "engine_checktally",
    "engine_checkresult",
    "connections_connectionevent",
    "engine_circuitbreaker",
]
OWNER = "growth-test"


def _sizes() -> dict[str, int]:
    _vacuum()
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT pg_table_size('connections_connection'), pg_table_size('engine_enginestate'), "
            + ", ".join(f"pg_total_relation_size('{t}')" for t in TABLES)
        )
        names = ["connections_connection (table)", "engine_enginestate (table)", *TABLES]
        return dict(zip(names, cursor.fetchone(), strict=True))


def _relations() -> dict[str, int]:
    """Every table's and index's own size (no TOAST), for the printed breakdown."""
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relname LIKE 'connection%%'"
        )
        return dict(cursor.fetchall())


def _checklog_updates() -> tuple[int, int]:
    """(updates, of which in place: HOT) of the check log table so far."""
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'engine_checklog'"
        )
        return cursor.fetchone()


def _vacuum() -> None:
    with db.cursor() as cursor:
        cursor.execute("VACUUM connections_connection, engine_enginestate, " + ", ".join(TABLES))


def _cycle(rows, profile, now: datetime, n: int) -> None:
    """One sweep cycle's writes: the claim (lease), then the batch write of every row."""
    ids = [c.pk for c in rows]
    EngineState.objects.filter(pk__in=ids).update(lease_owner=OWNER, lease_until=now + timedelta(seconds=120))
    outcomes = [
        Outcome(connection=c, profile=profile, ok=True, latency_ms=40 + (i * 7 + n) % 30, http_status=200)
        for i, c in enumerate(rows)
    ]
    outcomes_write(outcomes, now=now, owner=OWNER, stats=BatchStats())


def _run(conns, profile, start: datetime, minutes: int) -> None:
    """One check a minute for every connection, with the maintenance that runs in production:
    the hourly and daily tasks, and VACUUM every minute (what autovacuum does with its default
    one-minute nap and a table whose rows all change every minute: past its threshold of
    50 rows + 20 % at every nap)."""
    for n in range(minutes):
        now = start + n * timedelta(minutes=1)
        _cycle(conns, profile, now, n)
        _vacuum()
        if now.minute == 5:
            checkresults_rollup(now=now)
        if now.hour == 3 and now.minute == 30:
            checkresults_prune(now=now)


def test_a_healthy_connection_adds_at_most_2_kb_of_database_a_day(user):
    if db.vendor != "postgresql":
        pytest.skip("measured on PostgreSQL")
    start = datetime(2025, 3, 20, 8, 0, tzinfo=UTC)
    conns = [stored_connection(user, account_id=f"g{i:05d}", grant_started_at=start) for i in range(N)]
    profile = connection_profile(conns[0])
    # Warm-up: four hours bring every table to its working size (the check logs full, three
    # hours of tallies, the dead row versions that vacuum makes room for again).
    _run(conns, profile, start, 4 * 60)
    before = _sizes()
    relations_before = _relations()
    updates_before = _checklog_updates()
    _run(conns, profile, start + timedelta(hours=4), 24 * 60)  # 12:00 to 12:00: one midnight
    after = _sizes()
    relations = {k: v - relations_before.get(k, 0) for k, v in _relations().items()}
    print("\nrelations grown:", {k: v for k, v in relations.items() if v})
    updates, hot = (a - b for a, b in zip(_checklog_updates(), updates_before, strict=True))

    grown = {t: after[t] - before[t] for t in after}
    per_connection_day = sum(grown.values()) / N
    indexes = {k: v for k, v in relations.items() if k == "enginestate_due_idx"}
    print(f"storage growth for {N} connections x 1 day: {per_connection_day:.0f} B per connection-day; {grown}")
    print(f"EngineState next_check_at index (not bounded): {sum(indexes.values()) / N:.0f} B; {indexes}")
    print(f"check log updates in place (HOT): {hot} of {updates}")
    assert UptimeDay.objects.count() == N  # the day left behind at midnight, one row each
    assert CheckLog.objects.count() == N
    assert not CheckResult.objects.exists()  # healthy: no check kept whole
    assert updates >= 24 * 60 * N and hot / updates > 0.9, f"{hot} of {updates} check log updates in place"
    assert per_connection_day <= BOUND, f"{per_connection_day:.0f} bytes per connection-day"
