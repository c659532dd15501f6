"""Reading `timestamptz` columns with psycopg's C parser instead of Django's Python one.

Django registers, on every PostgreSQL connection, a timestamptz loader that is a Python
subclass of psycopg's pure-Python loader (it replaces the result's tzinfo with Django's), so
every datetime read parses its text in Python; a heartbeat check reads about a dozen per row
(the claim's Connection + EngineState, the re-reads). When Django's time zone and the session's
are both UTC, Django's replace() changes nothing, and psycopg's own C loader (installed with
psycopg[binary], `psycopg.adapters`) gives the same aware UTC datetimes much faster (the
measurement: docs/benchmarks.md#where-a-workers-cpu-per-check-goes-issue-25).

Public interfaces only: the loader psycopg itself registers for timestamptz, wrapped in a
`psycopg.adapt.Loader` (its documented `load`), registered on the connection's adapters. The
wrapper keeps the `timezone` attribute Django's cursor factory compares with its own zone
(django.db.backends.postgresql.base: it re-registers its loader on a cursor whose zone differs,
so a connection in another zone still reads through Django's). Anything else (no C loader,
USE_TZ off, a zone other than UTC) leaves Django's loader in place.
tests/test_pgtimestamps.py fails loudly if psycopg or Django stop fitting these assumptions.
"""

from __future__ import annotations

import datetime
import functools

from psycopg.adapt import Loader

TIMESTAMPTZ = "timestamptz"


@functools.cache
def c_loader():
    """psycopg's own text loader for timestamptz when it is the compiled one (psycopg[binary]
    or [c]); None with the pure-Python implementation."""
    import psycopg
    from psycopg.pq import Format
    from psycopg.types.datetime import TimestamptzLoader

    loader = psycopg.adapters.get_loader(psycopg.adapters.types[TIMESTAMPTZ].oid, Format.TEXT)
    return None if loader is None or loader is TimestamptzLoader else loader


class UtcTimestamptzLoader(Loader):
    """psycopg's C loader behind a Python Loader (the compiled class cannot be subclassed),
    for connections whose session zone is UTC."""

    # Compared by Django's create_cursor with the connection's zone: equal, so kept.
    timezone = datetime.UTC

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        self._parse = c_loader()(oid, context).load

    def load(self, data):
        return self._parse(data)


def timestamptz_loader_install(sender=None, connection=None, **kwargs) -> bool:
    """`connection_created` receiver: psycopg's C loader on this Django connection when its
    results are the same as Django's (USE_TZ, Django's zone UTC, the session's UTC). Returns
    whether it was installed."""
    if connection is None or connection.vendor != "postgresql" or c_loader() is None:
        return False
    pg = connection.connection
    if connection.timezone is not datetime.UTC or pg.info.parameter_status("TimeZone") != "UTC":
        return False
    pg.adapters.register_loader(TIMESTAMPTZ, UtcTimestamptzLoader)
    return True
