"""A connection's recent checks and hourly counts, packed in one small value (`CheckLog.data`).

No row per check: the value is rewritten in place by the batch write (PostgreSQL: a HOT
update of a ~1 KB row). It holds

* the last RECENT checks (time, passed, latency, HTTP status, error category): the
  dashboard's "last checks" bar shows 30, the detail page's latency chart 60;
* counts for the current UTC hour and the HOURS - 1 before it (checks, passed, latency sum
  and count of passed checks, slowest answer): the 24 h uptime, the hourly chart, the health
  score's success ratio and the trends read these;

and reports every UTC day it leaves behind (`Ring.add` returns it), for `UptimeDay`.

Layout, little-endian: header (version, number of checks, last hour as hours since the epoch),
the checks oldest first, then HOURS fixed slots (slot = hour % HOURS).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

RECENT = 60
HOURS = 26
VERSION = 1
HEADER = struct.Struct("<BBxxI")
ENTRY = struct.Struct("<IHHHB")  # seconds, milliseconds, latency ms, HTTP status, flags
SLOT = struct.Struct("<HHIHH")  # checks, passed, latency sum ms, latency count, slowest ms
U16, U32 = 0xFFFF, 0xFFFFFFFF
NO_LATENCY = U16
CATEGORIES = ["", "network", "broker_fault", "rate_limited", "auth", "configuration", "unexpected"]
SIZE = HEADER.size + RECENT * ENTRY.size + HOURS * SLOT.size
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Check:
    checked_at: datetime
    ok: bool
    latency_ms: int | None = None
    http_status: int | None = None
    category: str = ""


@dataclass
class HourCounts:
    checks: int = 0
    passed: int = 0
    latency_sum_ms: int = 0
    latency_count: int = 0
    latency_max_ms: int = 0

    def add(self, other: HourCounts) -> None:
        self.checks += other.checks
        self.passed += other.passed
        self.latency_sum_ms += other.latency_sum_ms
        self.latency_count += other.latency_count
        self.latency_max_ms = max(self.latency_max_ms, other.latency_max_ms)

    @property
    def latency_avg_ms(self) -> float | None:
        return self.latency_sum_ms / self.latency_count if self.latency_count else None


@dataclass
class DayCounts:
    """A finished UTC day: its totals and its 24 hours packed (`hours_unpack`)."""

    day: date
    totals: HourCounts
    hours: bytes


def epoch_hour(moment: datetime) -> int:
    return int((moment - EPOCH).total_seconds() // 3600)


def hour_start(hour: int) -> datetime:
    return EPOCH + timedelta(hours=hour)


def _clip(value: int, top: int) -> int:
    return max(0, min(int(value), top))


def hours_pack(slots: list[HourCounts]) -> bytes:
    return b"".join(
        SLOT.pack(
            _clip(s.checks, U16),
            _clip(s.passed, U16),
            _clip(s.latency_sum_ms, U32),
            _clip(s.latency_count, U16),
            _clip(s.latency_max_ms, U16),
        )
        for s in slots
    )


def hours_unpack(data: bytes | memoryview | None) -> list[HourCounts]:
    data = bytes(data or b"")
    return [HourCounts(*SLOT.unpack_from(data, i * SLOT.size)) for i in range(len(data) // SLOT.size)]


class Ring:
    """Decoded `CheckLog.data`. `add` records a check; `encode` packs it again."""

    __slots__ = ("checks", "last_hour", "slots")

    def __init__(self, data: bytes | memoryview | None = None) -> None:
        self.checks: list[Check] = []
        self.last_hour = 0
        self.slots = [HourCounts() for _ in range(HOURS)]
        data = bytes(data or b"")
        if len(data) < HEADER.size or data[0] != VERSION:
            return
        _, count, self.last_hour = HEADER.unpack_from(data, 0)
        offset = HEADER.size
        for _ in range(count):
            seconds, millis, latency, status, flags = ENTRY.unpack_from(data, offset)
            offset += ENTRY.size
            self.checks.append(
                Check(
                    checked_at=EPOCH + timedelta(seconds=seconds, milliseconds=millis),
                    ok=bool(flags & 1),
                    latency_ms=None if latency == NO_LATENCY else latency,
                    http_status=status or None,
                    category=CATEGORIES[(flags >> 1) % len(CATEGORIES)],
                )
            )
        self.slots = hours_unpack(data[offset : offset + HOURS * SLOT.size])
        self.slots += [HourCounts() for _ in range(HOURS - len(self.slots))]

    def encode(self) -> bytes:
        parts = [HEADER.pack(VERSION, len(self.checks), self.last_hour)]
        for check in self.checks:
            delta = check.checked_at - EPOCH
            seconds = int(delta.total_seconds())
            category = CATEGORIES.index(check.category) if check.category in CATEGORIES else len(CATEGORIES) - 1
            parts.append(
                ENTRY.pack(
                    _clip(seconds, U32),
                    delta.microseconds // 1000,
                    NO_LATENCY if check.latency_ms is None else _clip(check.latency_ms, U16 - 1),
                    _clip(check.http_status or 0, U16),
                    int(check.ok) | category << 1,
                )
            )
        parts.append(hours_pack(self.slots))
        return b"".join(parts)

    def add(self, check: Check) -> list[DayCounts]:
        """Record one check; return the UTC day(s) this check leaves behind (to store as UptimeDay).

        Hours never go backwards: a check stamped before the last hour recorded (another
        worker's clock) counts in that last hour, so a day is left behind exactly once."""
        hour = max(epoch_hour(check.checked_at), self.last_hour)
        finished: list[DayCounts] = []
        if hour > self.last_hour:
            if self.last_hour and hour // 24 > self.last_hour // 24:
                finished.append(self.day(self.last_hour // 24))
            for h in range(max(self.last_hour + 1, hour - HOURS + 1), hour + 1):
                self.slots[h % HOURS] = HourCounts()
            self.last_hour = hour
        slot = self.slots[hour % HOURS]
        slot.checks += 1
        if check.ok:
            slot.passed += 1
            if check.latency_ms is not None:
                slot.latency_sum_ms += check.latency_ms
                slot.latency_count += 1
        if check.latency_ms is not None:
            slot.latency_max_ms = max(slot.latency_max_ms, check.latency_ms)
        self.checks.append(check)
        if len(self.checks) > RECENT:
            del self.checks[: len(self.checks) - RECENT]
        return finished

    def hour(self, hour: int) -> HourCounts | None:
        """The counts of that epoch hour, or None when the ring no longer (or never) held it."""
        if not self.last_hour or hour > self.last_hour or hour <= self.last_hour - HOURS:
            return None
        return self.slots[hour % HOURS]

    def hours(self) -> dict[int, HourCounts]:
        """Every hour the ring holds with at least one check: {epoch hour: counts}."""
        found = {}
        for h in range(max(1, self.last_hour - HOURS + 1), self.last_hour + 1):
            slot = self.slots[h % HOURS]
            if slot.checks:
                found[h] = slot
        return found

    def day(self, day_number: int) -> DayCounts:
        """The day (days since the epoch) as far as the ring holds it: all of it when it is the
        ring's last day (HOURS >= 24)."""
        totals = HourCounts()
        slots = []
        for h in range(day_number * 24, day_number * 24 + 24):
            slot = self.hour(h) or HourCounts()
            totals.add(slot)
            slots.append(slot)
        return DayCounts(day=(EPOCH + timedelta(days=day_number)).date(), totals=totals, hours=hours_pack(slots))

    def recent(self, limit: int = RECENT) -> list[Check]:
        """The last `limit` checks, oldest first."""
        return self.checks[-limit:] if limit else []
