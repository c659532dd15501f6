"""What the staff system status page (ops/views_system.py) shows of brokers and the engine:
the queries and the rows built from them, so the view only calls these and renders; and the
alert its Acknowledge button names (ops/views.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from brokers.models import BrokerApp
from brokers.registry import UnknownBroker, all_profiles, get_profile
from brokers.services import broker_app_rotation_summary
from engine.selectors import check_counts_since, circuit_breakers_by_broker, refresh_awaiting_answer_by_app
from ops.models import Alert


def alert_get(alert_id) -> Alert | None:
    """The alert with this id, open or not; None when there is none."""
    return Alert.objects.filter(pk=alert_id).first()


def breaker_rows(now: datetime) -> list[dict]:
    """Per broker: its circuit's state and last error, and the last hour's check error rate."""
    states = circuit_breakers_by_broker()
    since = now - timedelta(hours=1)
    rates = {
        slug: {"n": row["checks"], "bad": row["checks"] - row["passed"]}
        for slug, row in check_counts_since(since).items()
    }
    rows = []
    for profile in all_profiles():
        breaker = states.get(profile.slug)
        rate = rates.get(profile.slug)
        rows.append(
            {
                "slug": profile.slug,
                "name": profile.name,
                "state": breaker.get_state_display() if breaker else "Closed",
                "state_key": breaker.state if breaker else "closed",
                "error_rate": f"{100 * rate['bad'] / rate['n']:.1f}%" if rate and rate["n"] else "no checks",
                "checks": rate["n"] if rate else 0,
                "last_error": breaker.last_error_message if breaker else "",
            }
        )
    return rows


def refresh_token_rows() -> list[dict]:
    """Per broker app: what was learned about its refresh tokens (brokers.rotation) and how
    many active connections have a refresh out that the broker has not answered."""
    awaiting = refresh_awaiting_answer_by_app()
    rows = []
    for app in BrokerApp.objects.all():
        try:
            profile = get_profile(app.broker_slug)
        except UnknownBroker:
            continue
        rows.append(
            {
                "slug": app.broker_slug,
                "name": profile.name,
                "environment": app.get_environment_display(),
                "summary": broker_app_rotation_summary(app, profile),
                "awaiting": awaiting.get(app.pk, 0),
            }
        )
    return rows
