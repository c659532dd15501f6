"""Timestamps come back from PostgreSQL through Django's own loader: aware, in UTC, NULL as None
(psycopg's loaders are not replaced: no private import, see issue 25)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_loaded_timestamps_are_the_same_instants_in_utc():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT '2026-01-01 12:00:00.123456+05'::timestamptz, NULL::timestamptz, "
            "'1999-12-31 23:59:59-08:30'::timestamptz"
        )
        east, nothing, west = cursor.fetchone()
    assert east == datetime(2026, 1, 1, 7, 0, 0, 123456, tzinfo=UTC) and east.utcoffset() == timedelta(0)
    assert nothing is None
    assert west == datetime(2000, 1, 1, 8, 29, 59, tzinfo=UTC)


def test_orm_rows_round_trip_their_times(django_user_model):
    moment = datetime(2026, 3, 29, 1, 30, 15, 250000, tzinfo=UTC)
    user = django_user_model.objects.create_user(email="times@example.com", password="x" * 16)
    django_user_model.objects.filter(pk=user.pk).update(date_joined=moment, last_login=moment + timedelta(hours=1))
    user.refresh_from_db()
    assert user.date_joined == moment and user.date_joined.utcoffset() == timedelta(0)
    assert user.last_login - user.date_joined == timedelta(hours=1)
