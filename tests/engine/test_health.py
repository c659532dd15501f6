"""Health score (docs/engine.md, "States, health, quality"), quality labels, uptime, trends and missed heartbeats,
from constructed histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from connections.models import ConnectionStatus
from engine.health import (
    connection_is_overdue,
    connection_trends,
    connection_uptime,
    connections_overdue,
    health_inputs_for,
    health_score,
    quality_for,
)
from engine.models import EngineState, Quality
from engine.refresh import connection_profile
from engine.retention import checkresults_prune, checkresults_rollup
from tests.engine.history import bad_transition, checks, stored_connection

pytestmark = pytest.mark.django_db

NOW = datetime(2025, 3, 20, 12, 30, tzinfo=UTC)
H = timedelta(hours=1)


def connection_at(user, now=NOW, **fields):
    """A healthy connection as of `now`: valid tokens, no hard deadline."""
    fields = {
        "grant_started_at": now - timedelta(days=10),
        "access_expires_at": now + timedelta(minutes=15),
        "refresh_expires_at": now + timedelta(days=28),
        "reauth_deadline_at": None,
        "next_check_at": now + timedelta(seconds=60),
        **fields,
    }
    return stored_connection(user, **fields)


def score(conn, *, ok=True, latency_ms=None, now=NOW, status=None) -> int:
    baseline = connection_profile(conn).baseline_latency_ms
    inputs = health_inputs_for([conn.pk], now=now)[conn.pk]
    latency_ms = baseline if latency_ms is None else latency_ms
    return health_score(conn, inputs, ok=ok, latency_ms=latency_ms, baseline_ms=baseline, now=now, status=status)


def a_good_day(conn, now=NOW):
    """A check a minute for the last 24 hours, all passed at the broker's baseline latency."""
    checks(conn, at=now - 24 * H, count=24 * 60, latency_ms=50)


def test_the_sandbox_baseline_is_50_ms(user):
    # The latency cases below are multiples of this.
    assert connection_profile(connection_at(user)).baseline_latency_ms == 50


def test_all_checks_passing_at_baseline_latency_scores_100_excellent(user):
    conn = connection_at(user)
    a_good_day(conn)
    checkresults_rollup(now=NOW)
    value = score(conn)
    assert value == 100
    assert quality_for(value) == Quality.EXCELLENT


def test_many_failures_make_a_connection_critical(user):
    conn = connection_at(user)
    checks(conn, at=NOW - 50 * timedelta(minutes=1), count=2)
    checks(conn, at=NOW - 40 * timedelta(minutes=1), ok=False, count=8, spacing=timedelta(minutes=4))
    bad_transition(conn, at=NOW - 40 * timedelta(minutes=1))
    # 50 x 2/11 passed (with this failed check) + 20 x 0 (failed) + 15 x 1 (tokens fine)
    # + 15 x (1 - 1/3) (one transition into degraded) = 34.09
    value = score(conn, ok=False, latency_ms=10_000)
    assert value == 34
    assert quality_for(value) == Quality.CRITICAL


@pytest.mark.parametrize(
    ("latency_ms", "expected"),
    [
        (40, 100),  # faster than the baseline: full marks
        (50, 100),
        (150, 90),  # 3x baseline: half the 20 latency points
        (200, 85),  # 4x: a quarter
        (250, 80),  # 5x: none
        (2000, 80),
    ],
)
def test_latency_against_the_broker_baseline(user, latency_ms, expected):
    conn = connection_at(user)
    a_good_day(conn)
    assert score(conn, latency_ms=latency_ms) == expected


def test_latency_four_times_the_baseline_lowers_the_score(user):
    conn = connection_at(user)
    a_good_day(conn)
    assert score(conn, latency_ms=200) < score(conn, latency_ms=50)


@pytest.mark.parametrize(
    ("deadline_in", "latency_ms", "expected"),
    [
        (timedelta(days=5), 50, 100),  # a hard deadline far away: full freshness
        (timedelta(hours=48), 50, 94),  # within 72 h: 0.6 x 15
        (timedelta(hours=12), 125, 82),  # within 24 h: 0.3 x 15 (+ 12.5 latency points at 2.5x)
        (-timedelta(minutes=1), 50, 85),  # past: no usable grant
    ],
)
def test_a_hard_deadline_coming_up_lowers_token_freshness(user, deadline_in, latency_ms, expected):
    conn = connection_at(user, reauth_deadline_at=NOW + deadline_in)
    a_good_day(conn)
    assert score(conn, latency_ms=latency_ms) == expected


def test_no_usable_token_scores_no_freshness(user):
    conn = connection_at(user, access_expires_at=NOW - timedelta(minutes=1))
    conn.refresh_token = ""
    conn.save()
    a_good_day(conn)
    assert score(conn) == 85


def test_recent_disconnections_lower_stability(user):
    conn = connection_at(user)
    a_good_day(conn)
    bad_transition(conn, at=NOW - timedelta(days=8))  # older than 7 days: forgotten
    assert score(conn) == 100
    bad_transition(conn, at=NOW - timedelta(days=3), to_status=ConnectionStatus.BROKER_OUTAGE)
    assert score(conn) == 95
    bad_transition(conn, at=NOW - timedelta(days=2), to_status=ConnectionStatus.NEEDS_REAUTH)
    bad_transition(conn, at=NOW - timedelta(days=1), to_status=ConnectionStatus.FAILED)
    assert score(conn) == 85
    bad_transition(conn, at=NOW - H)
    assert score(conn) == 85  # floored at 0 stability points


def test_needs_reauth_and_failed_are_capped_at_20(user):
    conn = connection_at(user, status=ConnectionStatus.NEEDS_REAUTH)
    a_good_day(conn)
    assert score(conn, ok=None) == 20
    conn.status = ConnectionStatus.FAILED
    assert score(conn, ok=None) == 20
    assert quality_for(20) == Quality.CRITICAL


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (100, Quality.EXCELLENT),
        (85, Quality.EXCELLENT),
        (84, Quality.GOOD),
        (65, Quality.GOOD),
        (64, Quality.POOR),
        (40, Quality.POOR),
        (39, Quality.CRITICAL),
        (0, Quality.CRITICAL),
    ],
)
def test_quality_labels_at_the_documented_boundaries(value, label):
    assert quality_for(value) == label


def test_the_success_ratio_counts_the_hour_in_progress_and_the_24_before_it(user):
    conn = connection_at(user)
    # Passed checks every 10 minutes for 30 hours, except the last 90 minutes: all failed.
    made = checks(conn, at=NOW - 30 * H, count=30 * 6 - 9, spacing=timedelta(minutes=10))
    made += checks(conn, at=NOW - 90 * timedelta(minutes=1), ok=False, count=9, spacing=timedelta(minutes=10))
    checkresults_rollup(now=NOW)  # changes nothing: the batch write counted them
    inputs = health_inputs_for([conn.pk], now=NOW)[conn.pk]
    # The window: from 12:00 yesterday (24 whole hours before the 12:00 hour in progress).
    window = [c for c in made if c.checked_at >= NOW.replace(minute=0) - 24 * H]
    assert inputs.checks == len(window) == 147
    assert inputs.successes == sum(c.ok for c in window) == 138


def test_uptime_over_24_hours_and_30_days(user, settings):
    settings.ENGINE_CHECKRESULT_RETENTION_DAYS = 7
    conn = connection_at(user)
    assert connection_uptime(conn, hours=24, now=NOW) is None  # no checks yet
    # 20 days ago, for 10 days: half the checks failed; the last 24 h: one in ten failed.
    for day in range(20, 10, -1):
        checks(conn, at=NOW - timedelta(days=day), count=12, spacing=timedelta(minutes=10))
        checks(conn, at=NOW - timedelta(days=day, hours=-3), ok=False, count=12, spacing=timedelta(minutes=10))
    checks(conn, at=NOW - 24 * H + timedelta(minutes=5), ok=False, count=10, spacing=timedelta(minutes=12))
    checks(conn, at=NOW - 20 * H, count=90, spacing=timedelta(minutes=12))
    checkresults_prune(now=NOW)  # the 20-day-old failure rows are gone, their days stay
    assert not conn.checks.filter(checked_at__lt=NOW - timedelta(days=8)).exists()
    assert connection_uptime(conn, hours=24, now=NOW) == pytest.approx(0.9)
    assert connection_uptime(conn, hours=720, now=NOW) == pytest.approx((120 + 90) / (240 + 100))


@pytest.mark.parametrize(
    ("before_ms", "recent_ms", "trend"),
    [(100, 60, "improving"), (100, 110, "stable"), (100, 90, "stable"), (100, 200, "degrading")],
)
def test_latency_trend_compares_the_last_hour_with_the_day_before(user, before_ms, recent_ms, trend):
    conn = connection_at(user)
    checks(conn, at=NOW - 25 * H, count=24 * 6, spacing=timedelta(minutes=10), latency_ms=before_ms)
    checks(conn, at=NOW - 50 * timedelta(minutes=1), count=5, spacing=timedelta(minutes=10), latency_ms=recent_ms)
    assert connection_trends(conn, now=NOW)["latency"] == trend


def test_error_rate_rising_falling_and_stable(user, other_user):
    rising = connection_at(user, account_id="acct-rise")
    checks(rising, at=NOW - 25 * H, count=24 * 6, spacing=timedelta(minutes=10))
    checks(rising, at=NOW - 50 * timedelta(minutes=1), count=2, spacing=timedelta(minutes=10))
    checks(rising, at=NOW - 30 * timedelta(minutes=1), ok=False, count=3, spacing=timedelta(minutes=10))
    assert connection_trends(rising, now=NOW)["error_rate"] == "rising"

    falling = connection_at(user, account_id="acct-fall")
    checks(falling, at=NOW - 25 * H, ok=False, count=12, spacing=timedelta(minutes=10))
    checks(falling, at=NOW - 23 * H, count=12, spacing=timedelta(minutes=10))
    checks(falling, at=NOW - 50 * timedelta(minutes=1), count=5, spacing=timedelta(minutes=10))
    assert connection_trends(falling, now=NOW) == {"latency": "stable", "error_rate": "falling"}

    steady = connection_at(other_user, account_id="acct-steady")
    checks(steady, at=NOW - 25 * H, count=24 * 6, spacing=timedelta(minutes=10))
    checks(steady, at=NOW - 50 * timedelta(minutes=1), count=5, spacing=timedelta(minutes=10))
    assert connection_trends(steady, now=NOW)["error_rate"] == "stable"

    new = connection_at(other_user, account_id="acct-new")
    checks(new, at=NOW - 50 * timedelta(minutes=1), count=5, spacing=timedelta(minutes=10))
    assert connection_trends(new, now=NOW) == {"latency": "unknown", "error_rate": "unknown"}


def test_a_missed_heartbeat_is_flagged_after_the_grace(user, settings):
    now = timezone.now()
    late = connection_at(user, now, account_id="acct-late", next_check_at=now - timedelta(seconds=300))
    on_time = connection_at(user, now, account_id="acct-ok", next_check_at=now - timedelta(seconds=100))
    stopped = connection_at(
        user, now, account_id="acct-reauth", status=ConnectionStatus.NEEDS_REAUTH, next_check_at=now - 10 * H
    )
    assert connection_is_overdue(late, now=now)
    assert not connection_is_overdue(on_time, now=now)  # within the default 120 s grace
    assert not connection_is_overdue(stopped, now=now)  # not checked on purpose: waits for a person
    assert set(connections_overdue(now=now)) == {late}
    settings.ENGINE_OVERDUE_GRACE_SECONDS = 60
    assert connection_is_overdue(on_time, now=now)
    assert set(connections_overdue(now=now)) == {late, on_time}
    # Active, yet with no next check: no sweep will check it, so both call it overdue.
    unscheduled = connection_at(user, now, account_id="acct-unscheduled", next_check_at=now)
    EngineState.objects.filter(connection=unscheduled).update(next_check_at=None)
    unscheduled.refresh_from_db()
    assert connection_is_overdue(unscheduled, now=now)
    assert set(connections_overdue(now=now)) == {late, on_time, unscheduled}


# --- the model's rules (issue 13): damping, no credit for a failed check, re-based on reconnect


def test_few_checks_give_no_score_but_not_enough_data(user):
    conn = connection_at(user)
    checks(conn, at=NOW - 3 * timedelta(minutes=1), count=3)
    assert score(conn) is None  # 3 stored + this one: fewer than HEALTH_MIN_CHECKS (5)
    checks(conn, at=NOW - 10 * timedelta(minutes=1), count=1)
    assert score(conn) == 100  # the fifth check
    assert quality_for(None) == ""


def test_a_failed_check_never_raises_the_score(user):
    conn = connection_at(user)
    # A bad spell, then recovery: recomputed with a failed check the sum could be higher than
    # the stored score (stability or freshness changed), but a failed check holds it down.
    checks(conn, at=NOW - 2 * H, count=60, ok=False)
    checks(conn, at=NOW - H, count=30)
    conn.health_score = 40
    assert score(conn, ok=False) == 40
    assert score(conn, ok=None) == 40  # no check made (open circuit): no credit either
    assert score(conn, ok=True) > 40  # a passed check may raise it


def test_reconnect_starts_a_new_history(user):
    conn = connection_at(user, status=ConnectionStatus.NEEDS_REAUTH, health_score=20)
    checks(conn, at=NOW - 2 * H, count=100, ok=False)
    bad_transition(conn, at=NOW - 2 * H, to_status=ConnectionStatus.NEEDS_REAUTH)
    # Reconnected ten minutes ago (services reset the score; grant_started_at moves on).
    conn.status = ConnectionStatus.CONNECTED
    conn.grant_started_at = NOW - timedelta(minutes=10)
    conn.health_score = None
    conn.save()
    checks(conn, at=NOW - timedelta(minutes=4), count=3)
    assert score(conn) is None  # the old grant's 100 failures and its trouble do not count
    checks(conn, at=NOW - timedelta(minutes=9), count=1)
    assert score(conn) == 100


def test_reconnect_through_the_service_resets_the_stored_score(user):

    conn = connection_at(user, status=ConnectionStatus.NEEDS_REAUTH, health_score=20, quality=Quality.CRITICAL)
    # What services._store_connection does on a reconnect, observed through the row.
    EngineState.objects.filter(pk=conn.pk).update(health_score=None, quality="")
    conn.refresh_from_db()
    assert conn.health_score is None


def test_a_long_outage_sinks_the_score_and_recovery_raises_it_gradually(user):
    conn = connection_at(user)
    checks(conn, at=NOW - 24 * H, count=12 * 60)  # half a day fine
    checks(conn, at=NOW - 12 * H, count=12 * 60 - 5, ok=False)  # then down for 12 hours
    during = score(conn, ok=False)
    assert during is not None and during < 65  # poor or worse
    conn.health_score = during
    assert score(conn, ok=None) == during  # checks skipped while the circuit is open: no change
    checks(conn, at=NOW - timedelta(minutes=4), count=4)
    after = score(conn, ok=True)
    assert during < after < 85  # better, but a day with 12 hours down is not excellent


def test_the_explanation_uses_the_same_inputs(user):
    from engine.health import health_explain

    conn = connection_at(user, last_check_at=NOW, last_success_at=NOW, last_latency_ms=50, health_score=100)
    a_good_day(conn)
    report = health_explain(conn, baseline_ms=50, now=NOW)
    assert report.score == 100
    assert [p.key for p in report.parts] == ["success", "latency", "freshness", "stability"]
    inputs = health_inputs_for([conn.pk], now=NOW)[conn.pk]
    assert report.parts[0].current == f"{inputs.successes} of {inputs.checks} passed"
    assert sum(p.weight for p in report.parts) == 100


def test_the_status_this_check_decided_is_scored(user):
    # The engine scores before it writes the transition: a check that found the grant dead is
    # capped although the row still says connected.
    conn = connection_at(user)
    a_good_day(conn)
    assert score(conn, ok=False, status=ConnectionStatus.NEEDS_REAUTH) == 20
