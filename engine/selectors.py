"""Reads of the engine's data for other apps' pages (ops' system status): queries live here,
not in their views."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Count

from connections.models import Connection
from connections.state import INACTIVE_STATUSES
from engine.checkstore import tallies_since
from engine.models import CircuitBreaker


def circuit_breakers_by_broker() -> dict[str, CircuitBreaker]:
    """Every broker's circuit breaker row, by broker slug (a broker without one is closed)."""
    return {breaker.broker_slug: breaker for breaker in CircuitBreaker.objects.all()}


def check_counts_since(since: datetime) -> dict[str, dict[str, int]]:
    """{broker slug: {"checks": n, "passed": n}} for the checks made from `since`'s minute on."""
    return {slug: {"checks": row["checks"], "passed": row["passed"]} for slug, row in tallies_since(since).items()}


def refresh_awaiting_answer_by_app() -> dict:
    """{broker app pk: n}: active connections with a refresh out that the broker has not answered."""
    return dict(
        Connection.objects.exclude(status__in=INACTIVE_STATUSES)
        .filter(refresh_sent_at__isnull=False, broker_app__isnull=False)
        .values_list("broker_app")
        .annotate(n=Count("pk"))
        .values_list("broker_app", "n")
    )
