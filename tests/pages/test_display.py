"""Open pages re-fetch a card only when what it shows changes: the display version."""

from datetime import timedelta

import pytest
from django.utils import timezone

from connections import display
from connections.models import ConnectionStatus

pytestmark = pytest.mark.django_db


def test_a_heartbeat_that_changes_nothing_shown_keeps_the_version(make_connection):
    connection = make_connection()
    before = display.display_version(connection)
    connection.updated_at = timezone.now() + timedelta(minutes=1)
    connection.last_check_at = timezone.now()
    connection.last_latency_ms = 999
    connection.lease_owner = "sweep:x"
    assert display.display_version(connection) == before


@pytest.mark.parametrize(
    "field, value",
    [
        ("status", ConnectionStatus.DEGRADED),
        ("health_score", 41),
        ("quality", "poor"),
        ("last_error_message", "The broker answered 503."),
        ("retry_attempt", 2),
        ("access_expires_at", None),
    ],
)
def test_what_a_person_sees_changes_the_version(make_connection, field, value):
    connection = make_connection()
    before = display.display_version(connection)
    setattr(connection, field, value)
    assert display.display_version(connection) != before


def test_passing_checks_refresh_a_card_once_per_quiet_window_not_every_minute(make_connection):
    connection = make_connection()
    start = timezone.now()
    versions = []
    for minute in range(30):  # half an hour of checks passing every 60 s
        connection.last_success_at = start + timedelta(minutes=minute)
        versions.append(display.display_version(connection))
    changes = sum(1 for a, b in zip(versions, versions[1:], strict=False) if a != b)
    assert 5 <= changes <= 6  # 1800 s / QUIET_SECONDS (300), not 29


def test_changed_publish_counts_only_rows_whose_version_changed(make_connection, settings):
    settings.REDIS_URL = ""  # nothing is sent; only the comparison is under test
    quiet, loud = make_connection(), make_connection()
    before = display.display_versions([quiet, loud])
    quiet.last_latency_ms = 1
    loud.health_score = 5
    assert display.display_changed_publish([quiet, loud], before) == 1
