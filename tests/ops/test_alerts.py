"""Alerts raised from stored checks (the engine's tallies), Connection and SweepRun rows, updated,
cleared, acknowledged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from connections.models import Connection, ConnectionStatus
from engine.checkstore import CheckRecord, checks_store
from engine.models import SweepRun
from engine.ring import Check
from ops.alerts import alerts_evaluate, conditions_measure
from ops.models import Alert
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db


def make_connections(user, n: int, status=ConnectionStatus.CONNECTED, slug="sandbox") -> list[Connection]:
    return [
        Connection.objects.create(
            user=user, broker_slug=slug, account_id=f"{slug}-{status}-{i}", status=status, environment="live"
        )
        for i in range(n)
    ]


def record_checks(connections, *, at, ok: bool, latency_ms: int | None = 40, per_connection: int = 5):
    checks_store(
        [
            CheckRecord(
                c.pk,
                c.broker_slug,
                Check(
                    checked_at=at - timedelta(seconds=60 * k),
                    ok=ok,
                    latency_ms=latency_ms,
                    http_status=200 if ok else 503,
                    category="" if ok else "broker_fault",
                ),
            )
            for c in connections
            for k in range(per_connection)
        ]
    )


def open_alert(kind, slug="sandbox"):
    return Alert.objects.filter(kind=kind, broker_slug=slug, cleared_at__isnull=True).first()


def test_high_error_rate_is_raised_from_check_results_and_clears_when_they_recover(user):
    now = timezone.now()
    conns = make_connections(user, 5)
    record_checks(conns, at=now, ok=False)  # 25 failed checks in the last 5 minutes
    record_checks(conns[:1], at=now, ok=True)  # 5 passed
    result = alerts_evaluate(now=now)
    assert result["raised"] >= 1
    alert = open_alert(Alert.Kind.HIGH_ERROR_RATE)
    assert alert.severity == Alert.Severity.CRITICAL
    assert "83% of 30 checks failed" in alert.message
    assert alert.value == pytest.approx(25 / 30)

    # Still failing a minute later: the same alert is updated, not duplicated.
    alerts_evaluate(now=now + timedelta(minutes=1))
    assert Alert.objects.filter(kind=Alert.Kind.HIGH_ERROR_RATE).count() == 1
    assert open_alert(Alert.Kind.HIGH_ERROR_RATE).last_seen_at == now + timedelta(minutes=1)

    # 20 minutes on, the failures have left the 15-minute window and checks pass again.
    later = now + timedelta(minutes=20)
    record_checks(conns, at=later, ok=True)
    alerts_evaluate(now=later)
    assert open_alert(Alert.Kind.HIGH_ERROR_RATE) is None
    cleared = Alert.objects.get(kind=Alert.Kind.HIGH_ERROR_RATE)
    assert cleared.cleared_at == later


def test_high_latency_against_the_profiles_baseline(user):
    now = timezone.now()
    conns = make_connections(user, 5)
    record_checks(conns, at=now, ok=True, latency_ms=200)  # sandbox baseline is 50 ms: 4x
    alerts_evaluate(now=now)
    alert = open_alert(Alert.Kind.HIGH_LATENCY)
    assert alert.severity == Alert.Severity.WARNING
    assert "p95 heartbeat latency 200 ms" in alert.message and "50 ms baseline" in alert.message

    # Worse: escalates to critical on the same row.
    record_checks(conns, at=now + timedelta(minutes=1), ok=True, latency_ms=900, per_connection=20)
    alerts_evaluate(now=now + timedelta(minutes=1))
    alert.refresh_from_db()
    assert alert.severity == Alert.Severity.CRITICAL and alert.cleared_at is None

    later = now + timedelta(minutes=40)
    record_checks(conns, at=later, ok=True, latency_ms=45)
    alerts_evaluate(now=later)
    alert.refresh_from_db()
    assert alert.cleared_at == later


def test_low_share_of_healthy_connections(user, settings):
    settings.ALERT_HEALTHY_MIN_CONNECTIONS = 4
    healthy = make_connections(user, 2)
    bad = make_connections(user, 3, status=ConnectionStatus.BROKER_OUTAGE)
    make_connections(user, 3, status=ConnectionStatus.DISCONNECTED)  # not counted
    alerts_evaluate()
    alert = open_alert(Alert.Kind.LOW_HEALTHY_SHARE)
    assert alert.severity == Alert.Severity.CRITICAL  # 40% < 50%
    assert "only 2 of 5 active connections (40%)" in alert.message
    Connection.objects.filter(pk__in=[c.pk for c in bad]).update(status=ConnectionStatus.CONNECTED)
    alerts_evaluate()
    assert open_alert(Alert.Kind.LOW_HEALTHY_SHARE) is None
    assert healthy


def test_sweep_falling_behind(user):
    now = timezone.now()
    make_connections(user, 1)
    SweepRun.objects.create(owner="w1", started_at=now - timedelta(seconds=5), finished_at=now, max_lag_seconds=90)
    alerts_evaluate(now=now)
    alert = open_alert(Alert.Kind.SWEEP_BEHIND, slug="")
    assert alert.severity == Alert.Severity.WARNING and "90 s behind" in alert.message
    # No sweep for ten minutes: the silence itself is the lag.
    alerts_evaluate(now=now + timedelta(minutes=10))
    alert.refresh_from_db()
    assert alert.severity == Alert.Severity.CRITICAL
    SweepRun.objects.create(owner="w1", started_at=now + timedelta(minutes=10), max_lag_seconds=1)
    alerts_evaluate(now=now + timedelta(minutes=10, seconds=5))
    alert.refresh_from_db()
    assert alert.cleared_at is not None


def test_too_few_checks_raise_nothing(user):
    now = timezone.now()
    record_checks(make_connections(user, 1), at=now, ok=False, per_connection=3)
    assert not [c for c in conditions_measure(now=now) if c.kind == Alert.Kind.HIGH_ERROR_RATE]


def test_alerts_are_shown_and_acknowledged_on_the_system_status_page(user, client, django_user_model):
    staff = django_user_model.objects.create_user(email="ops@example.com", password="x" * 12, is_staff=True)
    with_second_factor(staff)
    now = timezone.now()
    record_checks(make_connections(user, 5), at=now, ok=False)
    alerts_evaluate(now=now)
    alert = open_alert(Alert.Kind.HIGH_ERROR_RATE)
    client.force_login(staff)
    page = client.get(reverse("ops:system_status")).content.decode()
    assert f'data-alert="{alert.key}"' in page and "Acknowledge" in page

    response = client.post(
        reverse("ops:alert_acknowledge", args=[alert.pk]), {"next": reverse("ops:system_status")}
    )
    assert response.status_code == 302 and response["Location"] == reverse("ops:system_status")
    alert.refresh_from_db()
    assert alert.acknowledged_by == staff and alert.acknowledged_at is not None
    page = client.get(reverse("ops:system_status")).content.decode()
    assert "by ops@example.com" in page

    # Non-staff may not acknowledge.
    client.force_login(user)
    assert client.post(reverse("ops:alert_acknowledge", args=[alert.pk])).status_code == 403


def test_alert_admin_acknowledge_action(user, client, django_user_model):
    root = django_user_model.objects.create_superuser(email="root@example.com", password="x" * 12)
    with_second_factor(root)
    record_checks(make_connections(user, 5), at=timezone.now(), ok=False)
    alerts_evaluate()
    alert = open_alert(Alert.Kind.HIGH_ERROR_RATE)
    client.force_login(root)
    changelist = reverse("admin:ops_alert_changelist")
    assert alert.message in client.get(changelist).content.decode()
    client.post(changelist, {"action": "acknowledge", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.acknowledged_by == root
