"""ops.selectors.alert_get and ops.services.alert_acknowledge (issue 25: the system page's
Acknowledge button and the admin action call them); the page itself is in test_alerts.py."""

from __future__ import annotations

import logging

import pytest
from django.urls import reverse
from django.utils import timezone

from ops.models import Alert
from ops.selectors import alert_get
from ops.services import alert_acknowledge
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db


def _alert(key="sandbox:error_rate", **fields) -> Alert:
    return Alert.objects.create(
        key=key, broker_slug="sandbox", kind=Alert.Kind.HIGH_ERROR_RATE, severity=Alert.Severity.WARNING,
        message="Sandbox: 40% of checks failed", **fields
    )


def test_alert_get_finds_any_alert_by_id_and_none_for_an_unknown_one():
    cleared = _alert(cleared_at=timezone.now())
    assert alert_get(cleared.pk) == cleared
    assert alert_get(cleared.pk + 1000) is None


def test_an_open_alert_is_acknowledged_once_and_logged(user, caplog):
    alert = _alert()
    with caplog.at_level(logging.INFO, logger="ops.alerts"):
        assert alert_acknowledge(alert, user=user) is True
    assert alert.acknowledged_by == user and alert.acknowledged_at is not None  # read back
    assert [r.name for r in caplog.records if r.getMessage() == "ops.alert.acknowledged"] == ["ops.alerts"]
    first = alert.acknowledged_at
    assert alert_acknowledge(alert, user=user) is False
    assert Alert.objects.get(pk=alert.pk).acknowledged_at == first


def test_a_cleared_alert_is_not_acknowledged(user):
    alert = _alert(cleared_at=timezone.now())
    assert alert_acknowledge(alert, user=user) is False
    assert Alert.objects.get(pk=alert.pk).acknowledged_at is None


def test_the_button_answers_404_for_an_unknown_alert_and_403_before_looking(client, user, django_user_model):
    alert = _alert()
    client.force_login(user)
    assert client.post(reverse("ops:alert_acknowledge", args=[alert.pk + 1000])).status_code == 403
    staff = django_user_model.objects.create_user(email="ops@example.com", password="x" * 12, is_staff=True)
    with_second_factor(staff)
    client.force_login(staff)
    assert client.post(reverse("ops:alert_acknowledge", args=[alert.pk + 1000])).status_code == 404
    again = client.post(reverse("ops:alert_acknowledge", args=[alert.pk]), {"next": "https://elsewhere.example/"})
    assert again.status_code == 302 and again["Location"] == reverse("ops:system_status")
