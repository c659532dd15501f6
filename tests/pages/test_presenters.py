from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import ConnectionStatus
from engine.monitoring import monitoring_status
from pages.presenters.cards import card_for, disconnect_result
from pages.presenters.dashboard import dashboard_for_user, summary_for_user
from pages.presenters.detail import detail_for, events_view, uptime_phrase
from pages.presenters.phrases import STATUS_WORDS, duration_phrase

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("seconds", "phrase"),
    [(0, "0 s"), (40, "40 s"), (150, "2 min"), (3599, "59 min"), (5 * 3600, "5 h"), (2 * 86400 + 5, "2 days")],
)
def test_duration_phrase(seconds, phrase):
    assert duration_phrase(seconds) == phrase


def test_card_phrases(make_connection):
    connection = make_connection(checks=5)
    card = card_for(connection)
    assert card.last_success_text == "last successful check 2 min ago"
    assert card.token_text == "refreshes in 7 min"
    assert card.latency_text == "142 ms"
    assert card.quality_label == "Excellent"
    assert card.health_text == "93/100"
    assert card.broker_name == "Sandbox Broker"
    assert (card.state.key, card.state.label) == ("connected", "Connected")
    assert card.state.sentence == "The last check passed 2 min ago."
    assert card.can_check and not card.needs_reconnect and card.error is None


def test_capped_broker_says_reconnect_needed(make_connection):
    connection = make_connection(reauth_deadline_at=timezone.now() + timedelta(days=2, minutes=5))
    card = card_for(connection)
    assert card.token_text == "reconnect needed in 2 days"
    assert card.needs_reconnect  # within three days: offer Reconnect before it breaks


def test_never_connected_before_a_check_passed(make_connection):
    now = timezone.now()
    fresh = make_connection(last_check_at=None, grant_started_at=now, health_score=None, quality="")
    card = card_for(fresh)
    assert (card.state.label, card.state.group) == ("Checking", "checking")
    assert card.state.sentence.startswith("Waiting for the first check")
    assert card.health_text == "not enough data yet" and card.quality_label == ""
    # Reconnected after an old check: that check belonged to the old grant.
    again = make_connection(last_check_at=now - timedelta(hours=1), grant_started_at=now - timedelta(minutes=1))
    assert card_for(again).state.label == "Checking"


def test_retrying_with_the_real_next_attempt_and_plain_words(make_connection):
    from engine.models import SweepRun

    now = timezone.now()
    SweepRun.objects.create(owner="t", started_at=now - timedelta(seconds=30))
    connection = make_connection(
        status=ConnectionStatus.DEGRADED,
        retry_attempt=2,
        consecutive_failures=2,
        last_check_at=now - timedelta(seconds=20),
        # due in 5 s, but the sweep runs every 60 s: the next attempt is the tick 30 s from now
        next_check_at=now + timedelta(seconds=5),
        last_latency_ms=12,
        last_error_category="broker_fault",
        last_error_message="Sandbox Broker had a server error (HTTP 503).",
    )
    card = card_for(connection, now=now)
    assert (card.state.key, card.state.label, card.state.group) == ("retrying", "Retrying", "waiting")
    assert "brokerlink tries again in 30 s" in card.state.sentence
    assert card.state.next_at == now + timedelta(seconds=30)
    assert "data-countdown" in card.state.sentence_html
    assert card.latency_text == "—"  # the failed check's 12 ms is not a latency
    assert card.error.category_label == "Broker error"
    assert card.error.next_step.startswith("Nothing to do")


def test_retry_budget_used_up_says_brokerlink_keeps_checking(make_connection):
    now = timezone.now()
    connection = make_connection(
        status=ConnectionStatus.DEGRADED,
        retry_attempt=8,
        consecutive_failures=8,
        last_check_at=now,
        next_check_at=now + timedelta(minutes=5),
        last_error_category="network",
        last_error_message="timeout",
    )
    state = card_for(connection, now=now).state
    assert state.label == "Retrying slowly"
    assert "8 checks in a row failed. brokerlink now checks every 5 min and keeps the tokens alive" in state.sentence


def test_slow_rate_limited_and_outage_states(make_connection):
    now = timezone.now()
    slow = make_connection(last_check_at=now, last_success_at=now, last_latency_ms=3000)
    state = card_for(slow, now=now).state
    assert (state.label, state.group) == ("Slow", "working")
    assert "took 3,000 ms; Sandbox Broker usually answers in 50 ms" in state.sentence

    limited = make_connection(
        last_check_at=now,
        last_success_at=now - timedelta(minutes=1),
        last_error_category="rate_limited",
        next_check_at=now + timedelta(seconds=90),
    )
    state = card_for(limited, now=now).state
    assert state.label == "Rate limited"  # the row still says connected: the words do not
    assert "asked brokerlink to slow down. Nothing to do: the next check is in 1 min" in state.sentence

    outage = make_connection(
        status=ConnectionStatus.BROKER_OUTAGE,
        last_check_at=now,
        last_success_at=now - timedelta(minutes=5),
        last_error_category="broker_fault",
        next_check_at=now + timedelta(minutes=2),
    )
    state = card_for(outage, now=now).state
    assert (state.label, state.group) == ("Waiting for the broker", "waiting")
    assert "Nothing to do" in state.sentence


def test_needs_you_shows_no_token_lines_and_no_protocol_codes(make_connection):
    connection = make_connection(
        status=ConnectionStatus.NEEDS_REAUTH,
        last_error_category="auth",
        last_error_message="Sandbox Broker no longer accepts this authorization (invalid_grant).",
    )
    card = card_for(connection)
    assert (card.state.label, card.state.group) == ("Needs you", "needs_you")
    assert card.token_text == ""
    assert card.needs_reconnect and not card.can_check
    assert card.error.message == "Sandbox Broker no longer accepts this authorization."
    detail = detail_for(connection)
    assert detail.access_expires_text == "" and detail.refresh_expires_text == ""


def test_summary_counts_add_up_and_tiles_filter(make_connection):
    now = timezone.now()
    make_connection()
    make_connection(status=ConnectionStatus.CHECKING)
    make_connection(status=ConnectionStatus.BROKER_OUTAGE, last_check_at=now, last_success_at=now - timedelta(hours=1))
    make_connection(status=ConnectionStatus.NEEDS_REAUTH)
    make_connection(status=ConnectionStatus.DISCONNECTED)  # not on the dashboard
    user = make_connection().user
    dashboard = dashboard_for_user(user=user)
    summary = dashboard.summary
    assert (summary.working, summary.checking, summary.waiting, summary.needs_you) == (2, 1, 1, 1)
    assert sum(t.count for t in summary.tiles) == summary.total == len(dashboard.cards) == 5
    assert summary_for_user(user=user) == summary
    only = dashboard_for_user(user=user, show="needs_you")
    assert [c.state.key for c in only.cards] == ["needs_you"]
    assert only.summary.total == 5


def test_monitoring_stale_after_three_missed_sweeps():
    from engine.models import SweepRun

    now = timezone.now()
    assert not monitoring_status(now=now).active
    SweepRun.objects.create(owner="t", started_at=now - timedelta(seconds=50))
    assert monitoring_status(now=now).active
    later = now + timedelta(minutes=4)
    status = monitoring_status(now=later)
    assert not status.active
    assert "Monitoring is not running: the last check round was 4 min ago" in status.text


def test_beat_alive_without_a_check_round_is_not_monitoring():
    from ops.models import ServiceHeartbeat

    # Beat ticks, but no worker ran a tick (no SweepRun): nothing is being checked.
    ServiceHeartbeat.objects.create(kind="beat", name="beat@host", last_seen_at=timezone.now())
    assert not monitoring_status().active


def test_uptime_and_detail(make_connection):
    connection = make_connection(checks=10, failing=1)
    detail = detail_for(connection)
    # Ten checks are too few for a percentage.
    assert detail.uptime_24h == "9 of 10 checks passed"
    assert detail.uptime_30d == "9 of 10 checks passed"
    assert [u[0] for u in detail.uptimes] == ["24h", "7d", "30d", "1y"]
    assert uptime_phrase(1431, 1440) == "99.38% of 1,440 checks"
    assert uptime_phrase(20, 20) == "100% of 20 checks"
    assert detail.access_expires_text.startswith("expires in 12 min")
    assert "Latency of the last 10 checks" in detail.latency_svg
    assert "9 of 10 checks passed" in detail.uptime_svg


def test_refreshes_in_counts_to_the_refresh_not_the_expiry(make_connection):
    # The engine refreshes the Sandbox Broker's tokens 5 min before they expire (its margin).
    connection = make_connection(access_expires_at=timezone.now() + timedelta(minutes=12, seconds=30))
    assert card_for(connection).token_text == "refreshes in 7 min"
    connection = make_connection(access_expires_at=timezone.now() + timedelta(minutes=4))
    assert card_for(connection).token_text == "refreshing now"


def test_a_card_that_needs_you_shows_the_capped_health(make_connection):
    connection = make_connection(status=ConnectionStatus.NEEDS_REAUTH, health_score=73, quality="good")
    card = card_for(connection)
    assert (card.health_text, card.quality_label) == ("20/100", "Critical")
    connection = make_connection(status=ConnectionStatus.CONNECTED, health_score=73, quality="good")
    card = card_for(connection)
    assert (card.health_text, card.quality_label) == ("73/100", "Good")


def test_a_revocation_the_broker_did_not_confirm_is_said_once(make_connection):
    from connections.models import ConnectionEvent

    connection = make_connection(status=ConnectionStatus.DISCONNECTED)
    ConnectionEvent.objects.create(
        connection=connection,
        kind=ConnectionEvent.Kind.REVOCATION_FAILED,
        message="Not revoked: Sandbox Broker had a server error (HTTP 503).",
    )
    result = disconnect_result(connection)
    assert result["revoked"] is False
    assert result["message"] == "Sandbox Broker had a server error (HTTP 503)."


def test_the_deny_page_says_its_title_once_without_protocol_codes(rf, user):
    from pages import views

    request = rf.get("/connections/callback/sandbox/")
    request.user = user
    text = views._failure(request, "access_denied", slug="sandbox").content.decode()
    assert text.count("You declined access") == 2  # the <title> and the heading, no message above it
    assert "access_denied)" not in text
    assert "connect-error__actions" in text


def test_check_now_is_one_timeline_row(make_connection):
    from connections.models import ConnectionEvent
    from connections.state import connection_transition

    connection = make_connection()
    connection_transition(connection=connection, to_status=ConnectionStatus.CHECKING, message="Check requested.")
    connection_transition(connection=connection, to_status=ConnectionStatus.CONNECTED)
    connection_transition(connection=connection, to_status=ConnectionStatus.CHECKING, message="Check requested.")
    connection_transition(connection=connection, to_status=ConnectionStatus.DEGRADED, message="HTTP 503")
    rows = events_view(connection.events.order_by("-created_at", "-id"))
    assert [(r.kind_label, r.status_word) for r in rows] == [
        ("Checked on request", STATUS_WORDS[ConnectionStatus.DEGRADED]),
        ("Checked on request", STATUS_WORDS[ConnectionStatus.CONNECTED]),
    ]
    assert rows[0].message == "HTTP 503"
    assert ConnectionEvent.objects.filter(connection=connection).count() == 4  # the history keeps both
