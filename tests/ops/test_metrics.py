from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from connections.models import Connection, ConnectionEvent
from engine.checkstore import CheckRecord, checks_store
from engine.ring import Check
from ops import health
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = "metrics-token-xyz"
    health.health_cache_clear()


def scrape(client):
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-token-xyz")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_require_token_or_staff(client, django_user_model):
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 403
    staff = django_user_model.objects.create_user(email="ops@example.com", password="pw-ops-123", is_staff=True)
    with_second_factor(staff)
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200


def test_metrics_from_the_database(client, user):
    now = timezone.now()
    alpaca = Connection.objects.create(user=user, broker_slug="alpaca", account_id="A1", status="connected")
    Connection.objects.create(user=user, broker_slug="alpaca", account_id="A2", status="needs_reauth")
    tasty = Connection.objects.create(user=user, broker_slug="tastytrade", account_id="T1", status="connected")
    checks_store(
        [CheckRecord(alpaca.pk, "alpaca", Check(now, True, latency)) for latency in (40, 90, 300)]
        + [CheckRecord(alpaca.pk, "alpaca", Check(now, False, 3000, None, "network"))]
        + [CheckRecord(tasty.pk, "tastytrade", Check(now - timedelta(hours=3), True, 100))]
    )
    ConnectionEvent.objects.create(connection=alpaca, kind="refreshed")
    ConnectionEvent.objects.create(connection=alpaca, kind="refresh_failed")
    ConnectionEvent.objects.create(connection=tasty, kind="revoked")

    s = scrape(client)
    assert s[("brokerlink_connections", (("broker", "alpaca"), ("status", "connected")))] == 1
    assert s[("brokerlink_connections", (("broker", "alpaca"), ("status", "needs_reauth")))] == 1
    assert s[("brokerlink_connections", (("broker", "tastytrade"), ("status", "connected")))] == 1
    assert s[("brokerlink_checks_window", (("broker", "alpaca"), ("outcome", "ok")))] == 3
    assert s[("brokerlink_checks_window", (("broker", "alpaca"), ("outcome", "network")))] == 1
    assert ("brokerlink_checks_window", (("broker", "tastytrade"), ("outcome", "ok"))) not in s  # outside window
    hist = "brokerlink_check_latency_window_seconds"
    assert s[(f"{hist}_bucket", (("broker", "alpaca"), ("le", "0.05")))] == 1
    assert s[(f"{hist}_bucket", (("broker", "alpaca"), ("le", "0.5")))] == 3
    assert s[(f"{hist}_bucket", (("broker", "alpaca"), ("le", "+Inf")))] == 4
    assert s[(f"{hist}_sum", (("broker", "alpaca"),))] == pytest.approx(3.43)
    assert s[("brokerlink_refreshes_window", (("broker", "alpaca"), ("outcome", "success")))] == 1
    assert s[("brokerlink_refreshes_window", (("broker", "alpaca"), ("outcome", "failed")))] == 1
    assert s[("brokerlink_revocations_window", (("broker", "tastytrade"), ("outcome", "success")))] == 1
    assert ("brokerlink_queue_depth", ()) in s
    assert s[("brokerlink_service_up", (("service", "database"),))] == 1
    assert all(v == 0 for (name, _), v in s.items() if name == "brokerlink_metrics_source_errors")


def test_engine_metrics_when_the_engine_is_installed(client):
    engine = pytest.importorskip("engine.models")
    engine.CircuitBreaker.objects.create(broker_slug="alpaca", state="open")
    start = timezone.now() - timedelta(seconds=10)
    engine.SweepRun.objects.create(
        owner="w1", started_at=start, finished_at=start + timedelta(seconds=2), duration_ms=2000, max_lag_seconds=4.5
    )
    s = scrape(client)
    assert s[("brokerlink_circuit_state", (("broker", "alpaca"), ("state", "open")))] == 1
    assert s[("brokerlink_circuit_state", (("broker", "alpaca"), ("state", "closed")))] == 0
    assert s[("brokerlink_sweep_duration_seconds", ())] == 2.0
    assert s[("brokerlink_sweep_lag_seconds", ())] == 4.5


def test_one_failing_source_does_not_break_the_scrape(client, monkeypatch):
    from ops import metrics

    def broken():
        raise RuntimeError("redis down")
        yield  # pragma: no cover

    broken.__name__ = "collect_queue"
    monkeypatch.setattr(metrics, "SOURCES", [metrics.collect_connections, broken])
    s = scrape(client)
    assert s[("brokerlink_metrics_source_errors", (("source", "queue"),))] == 1
    assert s[("brokerlink_metrics_source_errors", (("source", "connections"),))] == 0
