"""Reads of connections, always scoped to their owner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection as db_connection
from django.db.models import QuerySet, prefetch_related_objects
from django.shortcuts import get_object_or_404

from connections.models import Connection, ConnectionStatus
from engine.checkstore import checklog_attach, history_for, ring_of, rings_for
from engine.ring import Check, Ring, epoch_hour


def connection_list_for_user(*, user) -> QuerySet[Connection]:
    return (
        Connection.objects.filter(user=user)
        .exclude(status=ConnectionStatus.DISCONNECTED)
        .select_related("broker_app", "engine_state")
        .order_by("broker_slug", "account_number_masked")
    )


def connection_list_disconnected_for_user(*, user) -> QuerySet[Connection]:
    return (
        Connection.objects.filter(user=user, status=ConnectionStatus.DISCONNECTED)
        .select_related("broker_app", "engine_state")
        .order_by("-disconnected_at")
    )


def connection_list_archived_for_user(*, user) -> QuerySet[Connection]:
    """The person's archived connections (disconnected, then put away), last disconnected first."""
    return connection_list_disconnected_for_user(user=user).filter(archived_at__isnull=False)


def connection_lists_for_dashboard(*, user) -> tuple[list[Connection], list[Connection], int]:
    """(the dashboard's connections, the disconnected ones not archived yet, how many are
    archived). The dashboard is the most viewed page: both reads are written in SQL, which
    saves the ORM's compile of a 41-column query on every view (measured:
    docs/benchmarks.md#figures-the-code-cites)."""
    table = Connection._meta.db_table
    disconnected = ConnectionStatus.DISCONNECTED.value
    rows = list(
        Connection.objects.raw(
            f"SELECT * FROM {table} WHERE user_id = %s AND (status <> %s OR archived_at IS NULL) "  # noqa: S608 - the model's own table
            "ORDER BY broker_slug, account_number_masked",
            [user.pk, disconnected],
        )
    )
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {table} "  # noqa: S608 - the model's own table name
            "WHERE user_id = %s AND status = %s AND archived_at IS NOT NULL",
            [user.pk, disconnected],
        )
        archived_count = cursor.fetchone()[0]
    prefetch_related_objects(rows, "engine_state")  # one query for the cards' health and last check
    shown = [c for c in rows if c.status != ConnectionStatus.DISCONNECTED]
    put_away = [c for c in rows if c.status == ConnectionStatus.DISCONNECTED]
    put_away.sort(key=lambda c: c.disconnected_at or c.created_at, reverse=True)
    return shown, put_away, archived_count


def connection_exists_for_user(*, user, connection_id) -> bool:
    return Connection.objects.filter(pk=connection_id, user=user).exists()


def connection_get_for_user(*, user, connection_id) -> Connection:
    """Another user's connection is a 404, never a 403: its existence is not disclosed."""
    return get_object_or_404(Connection.objects.select_related("engine_state"), pk=connection_id, user=user)


# --- check history: pages read checks only through these, so their storage can change ------


def connection_check_log(connection: Connection) -> Ring:
    """The connection's check log (engine.ring): its recent checks and last hours' counts."""
    return ring_of(connection)


def connection_check_log_load(connection: Connection) -> None:
    """Read the connection's check log once for the selectors below (a page's reads)."""
    checklog_attach(connection)


def connection_check_logs(ids) -> dict:
    """{connection id: check log} in one query."""
    return rings_for(ids)


def connection_check_history(connection: Connection, *, since: datetime):
    """The connection's counts by UTC hour since `since` (engine.checkstore.History)."""
    return history_for(connection, since=since)


def connection_recent_checks(connection: Connection, *, limit: int) -> list[Check]:
    """The last `limit` checks, oldest first (each has checked_at, ok, latency_ms, category)."""
    return ring_of(connection).recent(limit)


def connection_hourly_checks(connection: Connection, *, hours: int, now: datetime) -> list[tuple[datetime, int, int]]:
    """(hour, checks, passed) for each of the last `hours` UTC hours, oldest first, empty hours included."""
    start = (now - timedelta(hours=hours - 1)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    history = history_for(connection, since=start)
    first = epoch_hour(start)
    found = []
    for i in range(hours):
        counts = history.hours.get(first + i)
        found.append((start + timedelta(hours=i), counts.checks if counts else 0, counts.passed if counts else 0))
    return found


def connection_uptime_windows(connection: Connection, *, hours: list[int], now: datetime) -> list[tuple[int, int]]:
    """[(passed, checks)] over each of the last `hours`, from the check log and UptimeDay rows."""
    from engine.health import connection_uptime_windows as windows

    return windows(connection, hours=hours, now=now)


def connection_uptime_counts(connection: Connection, *, hours: int, now: datetime) -> tuple[int, int]:
    """(passed, checks) over the last `hours`."""
    return connection_uptime_windows(connection, hours=[hours], now=now)[0]
