from datetime import timedelta

import pytest
from django.utils import timezone

from connections import presenters
from connections.models import ConnectionStatus

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("seconds", "phrase"),
    [(0, "0 s"), (40, "40 s"), (150, "2 min"), (3599, "59 min"), (5 * 3600, "5 h"), (2 * 86400 + 5, "2 days")],
)
def test_duration_phrase(seconds, phrase):
    assert presenters.duration_phrase(seconds) == phrase


def test_card_phrases(make_connection):
    connection = make_connection(checks=5)
    card = presenters.card_for(connection)
    assert card.last_success_text == "last successful check 2 min ago"
    assert card.token_text == "refreshes in 12 min"
    assert card.latency_text == "142 ms"
    assert card.quality_label == "Excellent"
    assert card.broker_name == "Sandbox Broker"
    assert card.retry_text == ""
    assert card.can_check and not card.needs_reconnect and card.error is None


def test_capped_broker_says_reconnect_needed(make_connection):
    connection = make_connection(reauth_deadline_at=timezone.now() + timedelta(days=2, minutes=5))
    card = presenters.card_for(connection)
    assert card.token_text == "reconnect needed in 2 days"
    assert card.needs_reconnect  # within three days: offer Reconnect before it breaks


def test_retry_phrase_and_error_meaning(make_connection):
    connection = make_connection(
        status=ConnectionStatus.DEGRADED,
        retry_attempt=2,
        next_check_at=timezone.now() + timedelta(seconds=40.5),
        last_error_category="broker_fault",
        last_error_message="Sandbox Broker had a server error (HTTP 503).",
    )
    card = presenters.card_for(connection)
    assert card.retry_text == "retrying 2 of 8 in 40 s"
    assert card.error.category_label == "Broker fault"
    assert card.error.meaning == "The broker answered with a server error."
    assert card.error.next_step.startswith("Nothing to do")


def test_needs_reauth_says_reconnect_now(make_connection):
    card = presenters.card_for(make_connection(status=ConnectionStatus.NEEDS_REAUTH, last_error_category="auth"))
    assert card.token_text == "reconnect needed now"
    assert card.needs_reconnect and not card.can_check
    assert card.error.next_step == "Reconnect the account to authorize brokerlink again."


def test_summary_counts(make_connection):
    make_connection()
    make_connection(status=ConnectionStatus.CHECKING)
    make_connection(status=ConnectionStatus.BROKER_OUTAGE)
    make_connection(status=ConnectionStatus.NEEDS_REAUTH)
    make_connection(status=ConnectionStatus.DISCONNECTED)  # not on the dashboard
    dashboard = presenters.dashboard_for_user(user=make_connection().user)
    assert (dashboard.summary.healthy, dashboard.summary.attention, dashboard.summary.outage) == (3, 1, 1)
    assert presenters.summary_for_user(user=dashboard.cards[0].connection.user) == dashboard.summary


def test_monitoring_stale_after_three_missed_sweeps():
    from connections.engine.models import SweepRun

    now = timezone.now()
    assert not presenters.monitoring_status(now=now).active
    SweepRun.objects.create(owner="t", started_at=now - timedelta(seconds=50))
    assert presenters.monitoring_status(now=now).active
    later = now + timedelta(minutes=4)
    status = presenters.monitoring_status(now=later)
    assert not status.active
    assert "Monitoring is not running: the last check round was 4 min ago" in status.text


def test_monitoring_falls_back_to_beat_heartbeat():
    from ops.models import ServiceHeartbeat

    ServiceHeartbeat.objects.create(kind="beat", name="beat@host", last_seen_at=timezone.now())
    assert presenters.monitoring_status().active


def test_uptime_and_detail(make_connection):
    connection = make_connection(checks=10, failing=1)
    detail = presenters.detail_for(connection)
    assert detail.uptime_24h == "90%"
    assert detail.uptime_30d == "90%"
    assert detail.access_expires_text.startswith("expires in 12 min")
    assert "Latency over 10 points" in detail.latency_svg
    assert "9 of 10 checks passed" in detail.uptime_svg
