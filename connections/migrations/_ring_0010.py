"""engine/ring.py as migration connections 0010 used it (December 2026), frozen: the part the
migration calls (a Ring built from nothing, `add`, `keep`, `encode`; `hours_pack`), so the
migration writes the same bytes whatever later becomes of engine/ring.py. Never edit: a new
layout is a new migration. (The leading underscore keeps Django's migration loader away.)
tests/engine/test_storage_migration.py checks it still packs like engine/ring.py (format VERSION 1).

Layout, little-endian, always SIZE (980) bytes: header (version, number of checks, last hour as
hours since the epoch), RECENT check places (the checks oldest first, then zeros), then HOURS
fixed slots (slot = hour % HOURS).
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


SLOTS = struct.Struct("<" + "HHIHH" * HOURS)
TOPS = (U16, U16, U32, U16, U16)


def _entry(check: Check) -> bytes:
    delta = check.checked_at - EPOCH
    category = CATEGORIES.index(check.category) if check.category in CATEGORIES else len(CATEGORIES) - 1
    return ENTRY.pack(
        _clip(delta.days * 86400 + delta.seconds, U32),
        delta.microseconds // 1000,
        NO_LATENCY if check.latency_ms is None else _clip(check.latency_ms, U16 - 1),
        _clip(check.http_status or 0, U16),
        int(check.ok) | category << 1,
    )


class Ring:
    """Decoded `CheckLog.data`. `add` records a check; `encode` packs it again. The checks stay
    packed until read (`checks`) and the hours are plain integers: a batch write decodes, adds
    and encodes a log in a few microseconds."""

    __slots__ = ("_checks", "_entries", "_flat", "last_hour")

    def __init__(self, data: bytes | memoryview | None = None) -> None:
        self._checks: list[Check] | None = None
        self._entries = b""
        self.last_hour = 0
        self._flat = [0] * (HOURS * 5)
        data = bytes(data or b"")
        if len(data) < SIZE or data[0] != VERSION:
            return
        _, count, self.last_hour = HEADER.unpack_from(data, 0)
        self._entries = data[HEADER.size : HEADER.size + count * ENTRY.size]
        self._flat = list(SLOTS.unpack_from(data, HEADER.size + RECENT * ENTRY.size))

    def encode(self) -> bytes:
        """Always SIZE bytes (unused check places are zeros): the row never grows, so PostgreSQL
        can keep rewriting it in place (HOT) from the first check on."""
        count = len(self._entries) // ENTRY.size
        padding = bytes((RECENT - count) * ENTRY.size)
        return HEADER.pack(VERSION, count, self.last_hour) + self._entries + padding + SLOTS.pack(*self._flat)

    def add(self, check: Check) -> list[DayCounts]:
        """Record one check; return the UTC day(s) this check leaves behind (to store as UptimeDay).

        Hours never go backwards: a check stamped before the last hour recorded (another
        worker's clock) counts in that last hour, so a day is left behind exactly once."""
        delta = check.checked_at - EPOCH
        hour = max((delta.days * 86400 + delta.seconds) // 3600, self.last_hour)
        finished: list[DayCounts] = []
        flat = self._flat
        if hour > self.last_hour:
            if self.last_hour and hour // 24 > self.last_hour // 24:
                finished.append(self.day(self.last_hour // 24))
            for h in range(max(self.last_hour + 1, hour - HOURS + 1), hour + 1):
                i = (h % HOURS) * 5
                flat[i : i + 5] = (0, 0, 0, 0, 0)
            self.last_hour = hour
        i = (hour % HOURS) * 5
        latency = check.latency_ms
        flat[i] = min(flat[i] + 1, U16)
        if check.ok:
            flat[i + 1] = min(flat[i + 1] + 1, U16)
            if latency is not None:
                flat[i + 2] = min(flat[i + 2] + max(0, latency), U32)
                flat[i + 3] = min(flat[i + 3] + 1, U16)
        if latency is not None and latency > flat[i + 4]:
            flat[i + 4] = min(latency, U16)
        entries = self._entries + _entry(check)
        if len(entries) > RECENT * ENTRY.size:
            entries = entries[-RECENT * ENTRY.size :]
        self._entries = entries
        self._checks = None
        return finished

    def keep(self, check: Check) -> None:
        """Add a check to the recent ones only, not to the hours (for carrying history over)."""
        self._entries = (self._entries + _entry(check))[-RECENT * ENTRY.size :]
        self._checks = None

    def _valid(self, hour: int) -> bool:
        return bool(self.last_hour) and self.last_hour - HOURS < hour <= self.last_hour

    def hour(self, hour: int) -> HourCounts | None:
        """The counts of that epoch hour, or None when the ring no longer (or never) held it."""
        if not self._valid(hour):
            return None
        i = (hour % HOURS) * 5
        return HourCounts(*self._flat[i : i + 5])

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

