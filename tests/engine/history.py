"""Building a connection's past for engine tests: a stored connection (no broker call) and the
check results, rollups and events it would have accumulated."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from connections.models import CheckResult, Connection, ConnectionEvent, ConnectionStatus

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


def checks(
    conn: Connection,
    *,
    at: datetime,
    ok: bool = True,
    latency_ms: int | None = 50,
    count: int = 1,
    spacing: timedelta = timedelta(minutes=1),
) -> list[CheckResult]:
    """`count` results, the first at `at`, then one every `spacing`."""
    rows = [
        CheckResult(
            connection=conn,
            checked_at=at + i * spacing,
            ok=ok,
            latency_ms=latency_ms,
            http_status=200 if ok else 500,
            category="" if ok else "broker_fault",
        )
        for i in range(count)
    ]
    return CheckResult.objects.bulk_create(rows)


def bad_transition(conn: Connection, *, at: datetime, to_status: str = ConnectionStatus.DEGRADED) -> None:
    ConnectionEvent.objects.create(
        connection=conn,
        kind=ConnectionEvent.Kind.STATUS_CHANGED,
        from_status=ConnectionStatus.CONNECTED,
        to_status=to_status,
        created_at=at,
    )
