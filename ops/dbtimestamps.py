"""Timestamps read from PostgreSQL by psycopg's C parser instead of Django's Python one.

Django registers a Python `TimestamptzLoader` subclass on every connection so that loaded
datetimes carry the connection's time zone; it parses in Python, ~3.4 µs per value here.
With the connection's zone UTC (this project's only setting: TIME_ZONE = "UTC", USE_TZ =
True, and Django sets each session's TimeZone to it) psycopg's C loader returns the same
aware datetimes in UTC in ~0.26 µs. Loading the engine's connection rows spent 9 % of a
heartbeat's worker CPU in Django's loader (py-spy, bench/heartbeat.py). Anything but UTC, or
psycopg without its C extension, keeps Django's loader.
"""

from __future__ import annotations

from datetime import UTC


def _loader_class():
    try:
        import psycopg
        from psycopg.adapt import Loader

        if psycopg.pq.__impl__ != "binary":
            return None
        from psycopg_binary._psycopg import TimestamptzLoader
    except ImportError:  # pragma: no cover - the pinned psycopg[binary] has it
        return None

    class UTCTimestamptzLoader(Loader):
        # Django's cursor() compares this with the connection's zone and registers its own
        # loader on the cursor when they differ (the C class can't be subclassed to carry it).
        timezone = UTC

        def __init__(self, oid, context=None):
            super().__init__(oid, context)
            # psycopg takes `loader.load` once per query: the C loader's bound method, no
            # Python frame per value.
            self.load = TimestamptzLoader(oid, context).load

        def load(self, data):  # replaced per instance above; here for the abstract base
            raise NotImplementedError

    return UTCTimestamptzLoader


_LOADER = _loader_class()


def use_c_timestamp_loader(sender, connection, **kwargs) -> None:
    """connection_created receiver."""
    if _LOADER is None or connection.vendor != "postgresql" or connection.timezone != UTC:
        return
    connection.connection.adapters.register_loader("timestamptz", _LOADER)
