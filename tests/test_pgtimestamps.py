"""common.pgtimestamps: psycopg's C timestamptz loader on Django's connections reads exactly
what Django's own loader reads. Fails loudly when psycopg or Django change what it relies on."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import psycopg
import pytest
from django.db import DataError, connection
from django.db.backends.postgresql.psycopg_any import register_tzloader
from psycopg.pq import Format

from common.pgtimestamps import TIMESTAMPTZ, UtcTimestamptzLoader, c_loader, timestamptz_loader_install

pytestmark = pytest.mark.django_db

VALUES = [
    "2026-12-07 01:02:03.456789+00",
    "2026-12-07 01:02:03+05:30",
    "1999-12-31 23:59:59.999999-08",
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "2024-02-29 12:00:00+00",
]


def test_psycopg_still_has_its_c_loader():
    # psycopg[binary] is a requirement: without it the install is skipped (Django's loader stays).
    assert c_loader() is not None
    assert c_loader() is psycopg.adapters.get_loader(psycopg.adapters.types[TIMESTAMPTZ].oid, Format.TEXT)


def test_django_connections_get_it_and_django_keeps_it():
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        assert cursor.fetchone()[0].tzinfo is datetime.UTC
        # Django's create_cursor compares the loader's `timezone` with its own and did not swap it.
        assert connection.timezone is datetime.UTC
        assert connection.connection.adapters.get_loader(1184, Format.TEXT) is UtcTimestamptzLoader
        assert cursor.cursor.adapters.get_loader(1184, Format.TEXT) is UtcTimestamptzLoader


def test_same_values_as_djangos_loader():
    sql = "SELECT " + ", ".join(f"'{v}'::timestamptz" for v in VALUES)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        ours = cursor.fetchone()
        raw = cursor.cursor
        register_tzloader(connection.timezone, raw)  # Django's own loader, on this cursor only
        assert raw.adapters.get_loader(1184, Format.TEXT) is not UtcTimestamptzLoader
        raw.execute(sql)
        djangos = raw.fetchone()
    assert ours == djangos
    assert [v.tzinfo for v in ours] == [v.tzinfo for v in djangos] == [datetime.UTC] * len(VALUES)
    assert [v.isoformat() for v in ours] == [v.isoformat() for v in djangos]


def test_infinity_fails_as_with_djangos_loader():
    with connection.cursor() as cursor:
        with pytest.raises(DataError, match="after year 10K"):
            cursor.execute("SELECT 'infinity'::timestamptz")
            cursor.fetchone()
        register_tzloader(connection.timezone, cursor.cursor)
        with pytest.raises(DataError, match="after year 10K"):
            cursor.execute("SELECT 'infinity'::timestamptz")
            cursor.fetchone()


def test_not_installed_outside_utc():
    def fake(zone, session):
        pg = SimpleNamespace(info=SimpleNamespace(parameter_status=lambda name: session), adapters=None)
        return SimpleNamespace(vendor="postgresql", timezone=zone, connection=pg)

    from zoneinfo import ZoneInfo

    assert not timestamptz_loader_install(connection=fake(ZoneInfo("Europe/Paris"), "Europe/Paris"))
    assert not timestamptz_loader_install(connection=fake(datetime.UTC, "Europe/Paris"))
    assert not timestamptz_loader_install(connection=fake(None, "UTC"))  # USE_TZ off
    assert not timestamptz_loader_install(connection=SimpleNamespace(vendor="sqlite"))
