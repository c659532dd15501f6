"""Building a connection's past for engine tests: a stored connection (no broker call) and the
checks (check log, uptime days, tallies, failure rows) and events it would have accumulated."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from connections.models import Connection, ConnectionEvent, ConnectionStatus
from engine.checkstore import CheckRecord, _tallies_write, uptime_day_row
from engine.models import CheckLog, CheckResult, UptimeDay
from engine.ring import Check, Ring

ACCESS_TOKEN = "history-access-token-4f9c2e"  # noqa: S105 - a fake token, looked for in emails
REFRESH_TOKEN = "history-refresh-token-b81d7a"  # noqa: S105


def stored_connection(user, *, account_id: str = "acct-1", broker_slug: str = "sandbox", **fields) -> Connection:
    """A connected sandbox connection holding (sealed) tokens, due in a minute."""
    now = timezone.now()
    conn = Connection(
        user=user,
        broker_slug=broker_slug,
        environment="live",
        account_id=account_id,
        account_number_masked="••••" + account_id[-4:],
        status=ConnectionStatus.CONNECTED,
        grant_started_at=now - timedelta(days=1),
        access_expires_at=now + timedelta(minutes=15),
        refresh_expires_at=now + timedelta(days=29),
        next_check_at=now + timedelta(seconds=60),
    )
    conn.access_token = ACCESS_TOKEN
    conn.refresh_token = REFRESH_TOKEN
    for name, value in fields.items():
        setattr(conn, name, value)
    conn.save()
    return conn


# Every check recorded through `checks`, per connection: each call rebuilds the connection's
# check log and uptime days from all of them in time order, so a test may write its history
# in any order (the engine itself only ever appends).
_recorded: dict = {}


def checks(
    conn: Connection,
    *,
    at: datetime,
    ok: bool = True,
    latency_ms: int | None = 50,
    count: int = 1,
    spacing: timedelta = timedelta(minutes=1),
) -> list[Check]:
    """`count` checks, the first at `at`, then one every `spacing`, stored as the engine stores
    them (check log, uptime days, tallies; failures also as CheckResult rows)."""
    new = [
        Check(
            checked_at=at + i * spacing,
            ok=ok,
            latency_ms=latency_ms,
            http_status=200 if ok else 500,
            category="" if ok else "broker_fault",
        )
        for i in range(count)
    ]
    history_replace(conn, _recorded.setdefault(conn.pk, []) + new)
    _tallies_write([CheckRecord(conn.pk, conn.broker_slug, check) for check in new])
    CheckResult.objects.bulk_create(
        [
            CheckResult(
                connection=conn,
                checked_at=c.checked_at,
                ok=c.ok,
                latency_ms=c.latency_ms,
                http_status=c.http_status,
                category=c.category,
            )
            for c in new
            if not c.ok
        ]
    )
    return new


def history_replace(conn: Connection, history: list[Check]) -> Ring:
    """Make these (in any order) the connection's whole check history."""
    _recorded[conn.pk] = list(history)
    ring, days = Ring(), []
    for check in sorted(history, key=lambda c: c.checked_at):
        days += ring.add(check)
    CheckLog.objects.update_or_create(connection_id=conn.pk, defaults={"data": ring.encode()})
    conn._state.fields_cache.pop("check_log", None)
    UptimeDay.objects.filter(connection=conn).delete()
    UptimeDay.objects.bulk_create(uptime_day_row(conn.pk, d) for d in days)
    return ring


def bad_transition(conn: Connection, *, at: datetime, to_status: str = ConnectionStatus.DEGRADED) -> None:
    ConnectionEvent.objects.create(
        connection=conn,
        kind=ConnectionEvent.Kind.STATUS_CHANGED,
        from_status=ConnectionStatus.CONNECTED,
        to_status=to_status,
        created_at=at,
    )


def stored_checks(conn: Connection) -> list[Check]:
    """The connection's recent checks as the engine stored them (its check log), oldest first."""
    from engine.checkstore import rings_for

    return rings_for([conn.pk])[conn.pk].checks
