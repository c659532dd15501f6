"""Reads of connections, always scoped to their owner."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection as db_connection
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncHour
from django.shortcuts import get_object_or_404

from connections.models import CheckResult, Connection, ConnectionStatus


def connection_list_for_user(*, user) -> QuerySet[Connection]:
    return (
        Connection.objects.filter(user=user)
        .exclude(status=ConnectionStatus.DISCONNECTED)
        .select_related("broker_app")
        .order_by("broker_slug", "account_number_masked")
    )


def connection_list_disconnected_for_user(*, user) -> QuerySet[Connection]:
    return (
        Connection.objects.filter(user=user, status=ConnectionStatus.DISCONNECTED)
        .select_related("broker_app")
        .order_by("-disconnected_at")
    )


def connection_lists_for_dashboard(*, user) -> tuple[list[Connection], list[Connection], int]:
    """(the dashboard's connections, the disconnected ones not archived yet, how many are
    archived). The dashboard is the most viewed page: one query for the rows, and the count in
    plain SQL (the ORM spends ~0.6 ms of CPU building a COUNT, measured with bench/pages.py)."""
    rows = list(
        Connection.objects.filter(user=user)
        .filter(~Q(status=ConnectionStatus.DISCONNECTED) | Q(archived_at__isnull=True))
        .order_by("broker_slug", "account_number_masked")
    )
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {Connection._meta.db_table} "  # noqa: S608 - the model's own table name
            "WHERE user_id = %s AND status = %s AND archived_at IS NOT NULL",
            [user.pk, ConnectionStatus.DISCONNECTED.value],
        )
        archived_count = cursor.fetchone()[0]
    shown = [c for c in rows if c.status != ConnectionStatus.DISCONNECTED]
    put_away = [c for c in rows if c.status == ConnectionStatus.DISCONNECTED]
    put_away.sort(key=lambda c: c.disconnected_at or c.created_at, reverse=True)
    return shown, put_away, archived_count


def connection_get_for_user(*, user, connection_id) -> Connection:
    """Another user's connection is a 404, never a 403: its existence is not disclosed."""
    return get_object_or_404(Connection, pk=connection_id, user=user)


# --- check history: pages read checks only through these, so their storage can change ------


def connection_recent_checks(connection: Connection, *, limit: int) -> list[CheckResult]:
    """The last `limit` checks, oldest first (each has checked_at, ok, latency_ms, category)."""
    return list(CheckResult.objects.filter(connection=connection).order_by("-checked_at")[:limit])[::-1]


def connection_hourly_checks(connection: Connection, *, hours: int, now: datetime) -> list[tuple[datetime, int, int]]:
    """(hour, checks, passed) for each of the last `hours` hours, oldest first, empty hours included."""
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    rows = (
        CheckResult.objects.filter(connection=connection, checked_at__gte=start)
        .annotate(hour=TruncHour("checked_at"))
        .values("hour")
        .annotate(n=Count("id"), ok=Count("id", filter=Q(ok=True)))
    )
    by_hour = {row["hour"]: (row["n"], row["ok"]) for row in rows}
    return [(start + timedelta(hours=i), *by_hour.get(start + timedelta(hours=i), (0, 0))) for i in range(hours)]


def connection_uptime_counts(connection: Connection, *, hours: int, now: datetime) -> tuple[int, int]:
    """(passed, checks) over the last `hours`, from raw checks and the hourly rollups."""
    from connections.engine.health import connection_uptime_counts as counts

    return counts(connection, hours=hours, now=now)
