"""Where checks are stored, and read back: storage that does not grow with every check.

A check is written to (`checks_store`, one statement per kind per batch):

* the connection's `CheckLog`: its last checks and the last hours' counts (engine.ring's
  RECENT and HOURS), packed in one fixed-size value rewritten in place;
* `UptimeDay`: a UTC day's totals and 24 hourly counts, inserted once, when the connection's
  first check of a later day leaves the day behind;
* `CheckTally`: per broker and minute (metrics, alerts, the system page);
* `CheckResult`: a full row, only for a check that failed or changed the connection's status.

A healthy connection therefore adds one UptimeDay row a day and nothing else (measured in
`tests/engine/test_storage_growth.py`).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection as db_connection
from django.db import transaction

from engine import ring as ringlib
from engine.batch import connections_with_ids
from engine.models import CheckLog, CheckResult, CheckTally, UptimeDay
from engine.ring import SIZE as RING_SIZE
from engine.ring import Check, HourCounts, Ring, epoch_hour, hour_start, hours_unpack


@dataclass
class CheckRecord:
    connection_id: object
    broker_slug: str
    check: Check
    # Failed, or changed the connection's status: also kept whole as a CheckResult.
    keep: bool = False


# --- writing ---------------------------------------------------------------------------


def latency_bucket(ms: int) -> int:
    """The histogram bucket of a latency: its upper bound, exact below 100 ms, then two
    significant digits (so every metrics bucket bound, 50/100/250/…/10000 ms, is a bound here)."""
    ms = max(0, int(ms))
    for limit, step in ((100, 1), (1000, 10), (10_000, 100)):
        if ms < limit:
            return -(-ms // step) * step
    return -(-ms // 1000) * 1000


def _minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


_local = threading.local()


def _writer() -> str:
    """This thread's tally writer id: only this thread ever writes its rows."""
    if not hasattr(_local, "writer"):
        _local.writer = uuid.uuid4().hex[:16]
    return _local.writer


def _tally_add(row: dict, check: Check) -> None:
    row["checks"] += 1
    if check.ok:
        row["passed"] += 1
    else:
        key = check.category or "error"
        row["failures"][key] = row["failures"].get(key, 0) + 1
    if check.latency_ms is not None:
        bucket = str(latency_bucket(check.latency_ms))
        row["latency_all"][bucket] = row["latency_all"].get(bucket, 0) + 1
        row["latency_sum_ms"] += check.latency_ms
        if check.ok:
            row["latency_passed"][bucket] = row["latency_passed"].get(bucket, 0) + 1


def _empty_tally() -> dict:
    return {"checks": 0, "passed": 0, "failures": {}, "latency_all": {}, "latency_passed": {}, "latency_sum_ms": 0}


TALLY_FIELDS = ["checks", "passed", "failures", "latency_all", "latency_passed", "latency_sum_ms"]


def _tallies_write(records: list[CheckRecord]) -> None:
    """Add the records to this writer's rows: read them (no one else writes them), add, and
    write them back with one upsert."""
    writer = _writer()
    rows: dict[tuple[str, datetime], dict] = {}
    for record in records:
        rows.setdefault((record.broker_slug, _minute(record.check.checked_at)), _empty_tally())
    stored = CheckTally.objects.filter(
        writer=writer, broker_slug__in={slug for slug, _ in rows}, minute__in={minute for _, minute in rows}
    ).values_list("broker_slug", "minute", *TALLY_FIELDS)
    for slug, minute, *values in stored:
        if (slug, minute) in rows:
            rows[(slug, minute)] = dict(zip(TALLY_FIELDS, values, strict=True))
    for record in records:
        _tally_add(rows[(record.broker_slug, _minute(record.check.checked_at))], record.check)
    CheckTally.objects.bulk_create(
        [CheckTally(broker_slug=slug, minute=minute, writer=writer, **row) for (slug, minute), row in rows.items()],
        update_conflicts=True,
        unique_fields=["broker_slug", "minute", "writer"],
        update_fields=TALLY_FIELDS,
    )


def _rings_write(rings: dict) -> None:
    if db_connection.vendor == "postgresql":
        # Two bytea parameters, not arrays: ids as 16-byte values and rings as SIZE-byte
        # values, each concatenated. psycopg dumps an array element by element in Python (its
        # cost: docs/benchmarks.md#figures-the-code-cites); one bytes value is escaped in C.
        qn = db_connection.ops.quote_name
        table = qn(CheckLog._meta.db_table)
        encoded = [r.encode() for r in rings.values()]
        if any(len(data) != RING_SIZE for data in encoded):
            raise ValueError("a check log is not of the ring's fixed size")
        ids = b"".join((pk if isinstance(pk, uuid.UUID) else uuid.UUID(str(pk))).bytes for pk in rings)
        with db_connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (connection_id, data) "  # noqa: S608 - names from the model
                "SELECT encode(substring(%s::bytea FROM i * 16 + 1 FOR 16), 'hex')::uuid, "
                f"substring(%s::bytea FROM i * {RING_SIZE} + 1 FOR {RING_SIZE}) "
                "FROM generate_series(0, %s - 1) AS i "
                "ON CONFLICT (connection_id) DO UPDATE SET data = EXCLUDED.data",
                [ids, b"".join(encoded), len(encoded)],
            )
        return
    CheckLog.objects.bulk_create(
        [CheckLog(connection_id=pk, data=r.encode()) for pk, r in rings.items()],
        update_conflicts=True,
        unique_fields=["connection"],
        update_fields=["data"],
        batch_size=500,
    )


def uptime_day_row(connection_id, day) -> UptimeDay:
    """The UptimeDay row of a day a check log left behind (`Ring.add` / `Ring.day`)."""
    return UptimeDay(
        connection_id=connection_id,
        day=day.day,
        checks=day.totals.checks,
        passed=day.totals.passed,
        latency_sum_ms=day.totals.latency_sum_ms,
        latency_count=day.totals.latency_count,
        latency_max_ms=day.totals.latency_max_ms,
        hours=day.hours,
    )


def checks_store(records: list[CheckRecord]) -> None:
    """Store these checks (in the caller's transaction, or one of its own): see the module."""
    if not records:
        return
    with transaction.atomic():
        ids = sorted({r.connection_id for r in records}, key=str)
        # Locked: a check recorded at the same moment by someone else (an API call) is kept.
        locked = connections_with_ids(CheckLog.objects.select_for_update(), ids).order_by("pk")
        stored = dict(locked.values_list("pk", "data"))
        rings = {pk: Ring(stored.get(pk)) for pk in ids}
        days = []
        for record in sorted(records, key=lambda r: r.check.checked_at):
            for day in rings[record.connection_id].add(record.check):
                days.append(uptime_day_row(record.connection_id, day))
        _rings_write(rings)
        if days:
            # A day is left behind once (hours never go backwards); a conflict can only be the
            # same day stored by `checklogs_flush` already, with the same counts.
            UptimeDay.objects.bulk_create(days, ignore_conflicts=True)
        kept = [
            CheckResult(
                connection_id=r.connection_id,
                checked_at=r.check.checked_at,
                ok=r.check.ok,
                latency_ms=r.check.latency_ms,
                http_status=r.check.http_status,
                category=r.check.category,
            )
            for r in records
            if r.keep or not r.check.ok
        ]
        if kept:
            CheckResult.objects.bulk_create(kept, batch_size=1000)
        _tallies_write(records)


def checklogs_flush(*, now: datetime, connection_ids: Iterable | None = None) -> int:
    """Store as UptimeDay the last day of every check log whose connection has not been checked
    since that day ended (a connection that needs you, or stopped): readers would find it in the
    log anyway; this makes the day rows complete. Safe to run twice."""
    today = epoch_hour(now) // 24
    logs = CheckLog.objects.all()
    if connection_ids is not None:
        logs = logs.filter(pk__in=list(connection_ids))
    else:
        since = hour_start(today * 24) - timedelta(days=2)
        logs = logs.filter(
            connection__engine_state__last_check_at__gte=since,
            connection__engine_state__last_check_at__lt=hour_start(today * 24),
        )
    days = []
    for pk, data in logs.values_list("pk", "data").iterator(chunk_size=2000):
        ring = Ring(data)
        if ring.last_hour and ring.last_hour // 24 < today:
            day = ring.day(ring.last_hour // 24)
            if day.totals.checks:
                days.append(uptime_day_row(pk, day))
    UptimeDay.objects.bulk_create(days, batch_size=1000, ignore_conflicts=True)
    return len(days)


# --- reading ---------------------------------------------------------------------------


def ring_of(connection) -> Ring:
    """The connection's check log, from `select_related("check_log")` when it was loaded so."""
    cached = connection._state.fields_cache.get("check_log", False)
    if cached is not False:
        return Ring(cached.data if cached is not None else None)
    data = CheckLog.objects.filter(pk=connection.pk).values_list("data", flat=True).first()
    return Ring(data)


def checklog_attach(connection) -> None:
    """Load the connection's check log once (one query) for the readers that follow on a page."""
    if "check_log" not in connection._state.fields_cache:
        connection._state.fields_cache["check_log"] = CheckLog.objects.filter(pk=connection.pk).first()


def rings_for(ids: Iterable) -> dict:
    """{connection id: Ring} for these connections, in one query."""
    ids = list(ids)
    stored = dict(CheckLog.objects.filter(pk__in=ids).values_list("pk", "data"))
    return {pk: Ring(stored.get(pk)) for pk in ids}


TICK = timedelta(microseconds=1)


@dataclass
class History:
    """A connection's counts by UTC hour (and by whole UTC day where hours are no longer kept)."""

    hours: dict[int, HourCounts]
    days: dict[int, HourCounts]  # day number (days since the epoch): only days without hours

    def window(self, start: datetime, end: datetime | None = None) -> HourCounts:
        """Counts of the hours (and whole days) in [start, end): an hour or day the window cuts
        counts when at least half of it is inside."""
        half_hour, half_day = timedelta(minutes=30) - TICK, timedelta(hours=12) - TICK
        first = epoch_hour(start + half_hour)
        last = epoch_hour(end + half_hour) if end is not None else None
        total = HourCounts()
        for hour, counts in self.hours.items():
            if hour >= first and (last is None or hour < last):
                total.add(counts)
        first_day = epoch_hour(start + half_day) // 24
        last_day = epoch_hour(end + half_day) // 24 if end is not None else None
        for day, counts in self.days.items():
            if day >= first_day and (last_day is None or day < last_day):
                total.add(counts)
        return total


def history_for(connection, *, since: datetime, ring: Ring | None = None) -> History:
    """The connection's hours since `since`: the check log's, then (further back) its UptimeDay
    rows, in one query (none when the check log reaches back far enough)."""
    ring = ring if ring is not None else ring_of(connection)
    hours = dict(ring.hours())
    days: dict[int, HourCounts] = {}
    ring_first = ring.last_hour - ringlib.HOURS + 1 if ring.last_hour else None
    if ring_first is None or epoch_hour(since) < ring_first:
        rows = UptimeDay.objects.filter(connection_id=connection.pk, day__gte=since.astimezone(UTC).date())
        for day, checks, passed, lsum, lcount, lmax, packed in rows.values_list(
            "day", "checks", "passed", "latency_sum_ms", "latency_count", "latency_max_ms", "hours"
        ):
            number = (day - ringlib.EPOCH.date()).days
            if packed:
                for i, counts in enumerate(hours_unpack(packed)):
                    if counts.checks:
                        hours.setdefault(number * 24 + i, counts)
            else:
                days[number] = HourCounts(checks, passed, lsum, lcount, lmax)
    return History(hours=hours, days=days)


def tallies_since(since: datetime, *, broker_slug: str | None = None) -> dict[str, dict]:
    """{broker slug: {checks, passed, failures, latency_all, latency_passed, latency_sum_ms}}
    for the minutes from `since`'s minute on; histogram keys as ints."""
    rows = CheckTally.objects.filter(minute__gte=_minute(since))
    if broker_slug is not None:
        rows = rows.filter(broker_slug=broker_slug)
    found: dict[str, dict] = {}
    for slug, *values in rows.values_list("broker_slug", *TALLY_FIELDS).iterator():
        row = dict(zip(TALLY_FIELDS, values, strict=True))
        into = found.setdefault(slug, {**_empty_tally()})
        into["checks"] += row["checks"]
        into["passed"] += row["passed"]
        into["latency_sum_ms"] += row["latency_sum_ms"]
        for name in ("failures", "latency_all", "latency_passed"):
            target = into[name]
            for key, n in (row[name] or {}).items():
                key = key if name == "failures" else int(key)
                target[key] = target.get(key, 0) + n
    return found


def histogram_percentile(histogram: dict[int, int], fraction: float) -> float | None:
    """The smallest bucket bound at or below which `fraction` of the values lie
    (percentile_disc over the buckets)."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for bound in sorted(histogram):
        seen += histogram[bound]
        if seen >= fraction * total:
            return float(bound)
    return float(max(histogram))
