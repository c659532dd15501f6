"""Raw check results are rolled up per connection and hour, then pruned; uptime survives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connections.engine.health import connection_uptime
from connections.engine.models import UptimeRollup
from connections.engine.retention import checkresults_prune, checkresults_rollup
from connections.models import CheckResult
from tests.engine.history import checks, stored_connection

pytestmark = pytest.mark.django_db

# Half past an hour, so every window that is not aligned to hours would cut one in two.
NOW = datetime(2025, 3, 20, 12, 30, tzinfo=UTC)
H = timedelta(hours=1)
HOUR_10 = datetime(2025, 3, 20, 10, 0, tzinfo=UTC)
HOUR_11 = datetime(2025, 3, 20, 11, 0, tzinfo=UTC)


def rollups(conn) -> dict:
    return {
        r.hour: (r.checks, r.successes, r.latency_sum_ms, r.latency_count, r.latency_max_ms)
        for r in UptimeRollup.objects.filter(connection=conn)
    }


def test_rollup_counts_checks_successes_and_latency_per_connection_and_hour(user):
    a = stored_connection(user, account_id="acct-a")
    b = stored_connection(user, account_id="acct-b")
    # a, 10:00-11:00: three passed checks (40, 60, 80 ms) and one failure.
    for minute, latency in ((5, 40), (20, 60), (35, 80)):
        checks(a, at=HOUR_10 + timedelta(minutes=minute), latency_ms=latency)
    checks(a, at=HOUR_10 + timedelta(minutes=50), ok=False, latency_ms=30)
    # a, 11:00-12:00: two passed checks; b, 11:00-12:00: one failure without a response.
    checks(a, at=HOUR_11 + timedelta(minutes=1), latency_ms=100, count=2)
    checks(b, at=HOUR_11 + timedelta(minutes=59), ok=False, latency_ms=None)
    # The current hour is not complete: not rolled up yet.
    checks(a, at=NOW - timedelta(minutes=10), latency_ms=70)

    checkresults_rollup(now=NOW)

    assert rollups(a) == {HOUR_10: (4, 3, 180, 3, 80), HOUR_11: (2, 2, 200, 2, 100)}
    assert rollups(b) == {HOUR_11: (1, 0, 0, 0, 0)}
    hour_10 = UptimeRollup.objects.get(connection=a, hour=HOUR_10)
    assert hour_10.latency_avg_ms == 60
    assert UptimeRollup.objects.get(connection=b).latency_avg_ms is None


def test_rollup_twice_gives_the_same_rollups(user):
    conn = stored_connection(user)
    checks(conn, at=HOUR_10, count=30, spacing=timedelta(minutes=2))
    checks(conn, at=HOUR_11 + timedelta(minutes=3), ok=False, count=4)
    checkresults_rollup(now=NOW)
    first = rollups(conn)
    checkresults_rollup(now=NOW)
    checkresults_rollup(now=NOW + timedelta(minutes=20))  # a late run, same complete hours
    assert rollups(conn) == first
    assert UptimeRollup.objects.filter(connection=conn).count() == 2
    assert first[HOUR_10][:2] == (30, 30)
    assert first[HOUR_11][:2] == (4, 0)


def test_the_hourly_task_window_starting_mid_hour_does_not_undercount_that_hour(user):
    """The hourly task rolls up "the last three hours" from now (e.g. 12:30 -> since 09:30); the
    09:00 hour it starts in must keep all of its checks, not only those after 09:30."""
    conn = stored_connection(user)
    hour_9 = HOUR_10 - H
    checks(conn, at=hour_9, count=60)  # one a minute, 09:00-09:59
    checkresults_rollup(now=NOW - H)  # the 11:30 run: 09:00 complete, 60 checks
    assert rollups(conn)[hour_9][:2] == (60, 60)
    checkresults_rollup(since=NOW - 3 * H, now=NOW)  # the 12:30 run: since 09:30
    assert rollups(conn)[hour_9][:2] == (60, 60)


def test_prune_deletes_old_raw_rows_and_uptime_still_comes_from_rollups(user, settings):
    settings.ENGINE_CHECKRESULT_RETENTION_DAYS = 7
    conn = stored_connection(user)
    # Ten days of history, one check every 20 minutes; one failure in every six (5/6 uptime),
    # and a bad day 9 days ago (only failures).
    start = NOW - timedelta(days=10)
    moment = start
    n = 0
    while moment < NOW:
        bad_day = NOW - timedelta(days=9) <= moment < NOW - timedelta(days=8)
        checks(conn, at=moment, ok=not bad_day and n % 6 != 5, latency_ms=50)
        moment += timedelta(minutes=20)
        n += 1
    total = CheckResult.objects.filter(connection=conn).count()
    passed = CheckResult.objects.filter(connection=conn, ok=True).count()
    assert total == 10 * 24 * 3
    # Nothing rolled up before: the daily prune rolls up what it is about to delete.
    before_30d = connection_uptime(conn, hours=720, now=NOW)
    before_24h = connection_uptime(conn, hours=24, now=NOW)
    assert before_30d == pytest.approx(passed / total)

    deleted = checkresults_prune(now=NOW)

    cutoff = NOW - timedelta(days=7)
    assert deleted > 0
    assert not CheckResult.objects.filter(checked_at__lt=cutoff - H).exists()  # at most an hour older
    assert CheckResult.objects.filter(checked_at__gte=cutoff).count() == 7 * 24 * 3
    assert connection_uptime(conn, hours=720, now=NOW) == pytest.approx(before_30d)
    assert connection_uptime(conn, hours=24, now=NOW) == pytest.approx(before_24h)

    # The hourly rollup and the next day's prune run later: still the same uptime.
    checkresults_rollup(now=NOW + timedelta(minutes=40))
    checkresults_prune(now=NOW + timedelta(minutes=40))
    checkresults_rollup(now=NOW + timedelta(hours=1))
    assert connection_uptime(conn, hours=720, now=NOW) == pytest.approx(before_30d)
    rolled = UptimeRollup.objects.filter(connection=conn)
    assert sum(r.checks for r in rolled) == total  # every hour rolled up, each check once
    assert sum(r.successes for r in rolled) == passed


def test_prune_keeps_rows_inside_the_retention_window(user, settings):
    settings.ENGINE_CHECKRESULT_RETENTION_DAYS = 2
    conn = stored_connection(user)
    checks(conn, at=NOW - timedelta(days=3), count=3)
    recent = checks(conn, at=NOW - timedelta(days=1), count=3)
    assert checkresults_prune(now=NOW) == 3
    assert set(CheckResult.objects.values_list("pk", flat=True)) == {r.pk for r in recent}
    assert connection_uptime(conn, hours=720, now=NOW) == 1.0
