"""Check storage stays bounded: the check log is rewritten in place, a UTC day becomes one
UptimeDay row when the log leaves it behind, and pruning keeps every table within its retention
while uptime survives."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from engine.checkstore import CheckRecord, checks_store, rings_for
from engine.health import connection_uptime
from engine.models import CheckLog, CheckResult, CheckTally, UptimeDay
from engine.retention import checkresults_prune, checkresults_rollup
from engine.ring import HOURS, RECENT, SIZE, Check, Ring, hours_unpack
from tests.engine.history import checks, stored_connection

pytestmark = pytest.mark.django_db

# Half past an hour, so every window that is not aligned to hours would cut one in two.
NOW = datetime(2025, 3, 20, 12, 30, tzinfo=UTC)
H = timedelta(hours=1)
HOUR_10 = datetime(2025, 3, 20, 10, 0, tzinfo=UTC)


def record(conn, at, *, ok=True, latency_ms=50, keep=False):
    return CheckRecord(
        conn.pk,
        conn.broker_slug,
        Check(at, ok, latency_ms, 200 if ok else 500, "" if ok else "broker_fault"),
        keep=keep,
    )


def test_the_ring_round_trips_keeps_the_last_checks_and_stays_small():
    ring = Ring()
    for i in range(200):
        ring.add(Check(HOUR_10 + i * timedelta(minutes=1), i % 7 != 0, 40 + i, 200, "" if i % 7 else "network"))
    data = ring.encode()
    assert len(data) == SIZE <= 1024
    again = Ring(data)
    assert [c.checked_at for c in again.checks] == [HOUR_10 + i * timedelta(minutes=1) for i in range(140, 200)]
    assert again.checks == ring.checks and len(again.checks) == RECENT
    assert again.checks[-4] == Check(HOUR_10 + 196 * timedelta(minutes=1), False, 236, 200, "network")
    # 10:00-13:19: hours 10, 11, 12 full (60 each), 13 with 20 checks.
    counts = {h % 24: (c.checks, c.passed, c.latency_max_ms) for h, c in again.hours().items()}
    assert counts == {10: (60, 51, 99), 11: (60, 51, 159), 12: (60, 52, 219), 13: (20, 17, 239)}
    assert len(again.slots) == HOURS


def test_a_check_stamped_before_the_last_hour_counts_in_it():
    """Workers' clocks differ: hours never go backwards, so a day is left behind once."""
    ring = Ring()
    assert ring.add(Check(datetime(2025, 3, 20, 23, 59, 59, tzinfo=UTC), True)) == []
    (day,) = ring.add(Check(datetime(2025, 3, 21, 0, 0, 1, tzinfo=UTC), True))
    assert day.day == date(2025, 3, 20) and day.totals.checks == 1
    assert ring.add(Check(datetime(2025, 3, 20, 23, 59, 58, tzinfo=UTC), True)) == []
    assert [c.checks for c in ring.hours().values()] == [1, 2]


def test_a_day_left_behind_becomes_one_uptime_day_with_its_hours(user):
    a = stored_connection(user, account_id="acct-a")
    b = stored_connection(user, account_id="acct-b")
    day_1 = datetime(2025, 3, 19, tzinfo=UTC)
    records = [record(a, day_1 + timedelta(hours=10, minutes=m), latency_ms=40 + m) for m in (5, 20, 35)]
    records += [record(a, day_1 + timedelta(hours=10, minutes=50), ok=False, latency_ms=30)]
    records += [record(a, day_1 + timedelta(hours=23, minutes=59), latency_ms=100)]
    records += [record(b, day_1 + timedelta(hours=11), ok=False, latency_ms=None)]
    checks_store(records)
    assert not UptimeDay.objects.exists()  # the day is still the logs' last
    checks_store([record(a, NOW), record(b, NOW)])

    day_a = UptimeDay.objects.get(connection=a)
    assert (day_a.day, day_a.checks, day_a.passed, day_a.latency_sum_ms, day_a.latency_count, day_a.latency_max_ms) == (
        date(2025, 3, 19),
        5,
        4,
        45 + 60 + 75 + 100,
        4,
        100,
    )
    hours = hours_unpack(day_a.hours)
    assert len(hours) == 24 and (hours[10].checks, hours[10].passed, hours[23].checks) == (4, 3, 1)
    assert UptimeDay.objects.get(connection=b).passed == 0
    # Failures are kept whole, passed checks are not.
    assert CheckResult.objects.filter(connection=a).count() == 1
    assert CheckResult.objects.filter(connection=b).count() == 1
    assert CheckLog.objects.count() == 2
    ring = rings_for([a.pk])[a.pk]
    assert ring.checks[-1].checked_at == NOW and len(ring.checks) == 6


def test_the_hourly_task_stores_the_last_day_of_logs_no_longer_checked_twice_the_same(user):
    conn = stored_connection(user, last_check_at=NOW - timedelta(days=1))
    checks_store([record(conn, NOW - timedelta(days=1) + timedelta(minutes=i)) for i in range(30)])
    assert checkresults_rollup(now=NOW) == 1
    assert checkresults_rollup(now=NOW + H) == 1  # again: the same row, not a second one
    (day,) = UptimeDay.objects.filter(connection=conn)
    assert (day.day, day.checks, day.passed) == (date(2025, 3, 19), 30, 30)
    # Its next check leaves the same day behind: no double count.
    checks_store([record(conn, NOW)])
    assert UptimeDay.objects.get(connection=conn).checks == 30
    assert connection_uptime(conn, hours=48, now=NOW) == 1.0


def test_prune_keeps_each_table_within_its_retention_and_uptime_survives(user, settings):
    settings.ENGINE_CHECKRESULT_RETENTION_DAYS = 7
    settings.ENGINE_HOURLY_RETENTION_DAYS = 5
    settings.ENGINE_DAILY_RETENTION_DAYS = 9
    conn = stored_connection(user)
    # Ten days of history, one check every 20 minutes; one failure in every six.
    made = []
    moment = NOW - timedelta(days=10)
    n = 0
    while moment < NOW:
        made += checks(conn, at=moment, ok=n % 6 != 5, latency_ms=50)
        moment += timedelta(minutes=20)
        n += 1
    assert UptimeDay.objects.filter(connection=conn).count() == 10  # 10 finished UTC days + today in the log
    before_7d = connection_uptime(conn, hours=24 * 7, now=NOW)
    window = [c for c in made if c.checked_at >= NOW - timedelta(days=7)]
    assert before_7d == pytest.approx(sum(c.ok for c in window) / len(window), abs=0.002)

    deleted = checkresults_prune(now=NOW)

    assert deleted > 0
    assert not CheckResult.objects.filter(checked_at__lt=NOW - timedelta(days=7)).exists()
    assert CheckResult.objects.filter(checked_at__gte=NOW - timedelta(days=7)).count() == 7 * 24 * 3 // 6
    days = dict(UptimeDay.objects.filter(connection=conn).values_list("day", "hours"))
    assert min(days) == date(2025, 3, 11)  # older than 9 days: deleted
    assert all((hours is None) == (day < date(2025, 3, 15)) for day, hours in days.items())
    # The window now starts in a day without hours (kept 5 days here): that day counts whole.
    assert connection_uptime(conn, hours=24 * 7, now=NOW) == pytest.approx(before_7d, abs=0.002)
    # Tallies: the hourly task (which the daily one runs first) keeps three hours of them.
    assert not CheckTally.objects.filter(minute__lt=NOW - timedelta(hours=3)).exists()
    assert CheckTally.objects.filter(minute__gte=NOW - timedelta(hours=3)).exists()


def test_prune_keeps_rows_inside_the_retention_window(user, settings):
    settings.ENGINE_CHECKRESULT_RETENTION_DAYS = 2
    conn = stored_connection(user)
    checks(conn, at=NOW - timedelta(days=3), count=3, ok=False)
    recent = checks(conn, at=NOW - timedelta(days=1), count=3, ok=False)
    assert checkresults_prune(now=NOW) == 3
    assert sorted(CheckResult.objects.values_list("checked_at", flat=True)) == [c.checked_at for c in recent]
    assert connection_uptime(conn, hours=720, now=NOW) == 0.0
