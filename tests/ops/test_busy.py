"""Busy (PostgreSQL up, no connection free for us) is told apart from down: readiness stays
200 "degraded" and pages answer 503 "busy" instead of 500."""

import os

import psycopg
import pytest
from django.db import OperationalError
from django.test import RequestFactory

from ops import health
from ops.busy import DatabaseBusyMiddleware, database_busy
from tests import support


@pytest.fixture
def full_role(django_db_setup, django_db_blocker):
    """A role PostgreSQL refuses every connection to ("too many connections for role")."""
    name = f"brokerlink_full_{os.getpid()}"
    admin = support.test_database_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{name}"')
        conn.execute(f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT 0')
    yield admin.replace("postgresql://postgres@", f"postgresql://{name}@")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP ROLE "{name}"')


def test_refused_for_lack_of_slots_is_busy_and_unreachable_is_not(full_role):
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(full_role, connect_timeout=3)
    assert database_busy(refused.value)
    with pytest.raises(psycopg.OperationalError) as unreachable:
        psycopg.connect("postgresql://postgres@127.0.0.1:1/test", connect_timeout=3)
    assert not database_busy(unreachable.value)


@pytest.mark.django_db
def test_busy_database_makes_readiness_degraded_not_unhealthy(full_role, monkeypatch):
    """The real readiness check, as a role PostgreSQL has no slot for: busy, degraded, 200."""
    from django.db import connections

    connection = connections["default"]

    role = full_role.split("//", 1)[1].split("@", 1)[0]
    busy = connection.__class__(dict(connection.settings_dict, USER=role), alias="busy-test")
    busy.inc_thread_sharing()  # the check runs in its own thread
    monkeypatch.setattr(health, "connection", busy)
    result = health._run_one("database", health.check_database, timeout=5)
    assert result.ok is False and result.data == {"state": "busy"} and not result.critical
    assert health.health_overall([result]) == health.DEGRADED

    down = connection.__class__(dict(connection.settings_dict, PORT="1"), alias="down-test")
    down.inc_thread_sharing()
    monkeypatch.setattr(health, "connection", down)
    result = health._run_one("database", health.check_database, timeout=5)
    assert result.ok is False and result.critical
    assert health.health_overall([result]) == health.UNHEALTHY


def test_busy_page_is_a_503_with_retry_after():
    middleware = DatabaseBusyMiddleware(lambda request: None)
    request = RequestFactory().get("/connections/")
    response = middleware.process_exception(request, OperationalError('too many connections for role "web"'))
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert b"busy" in response.content
    assert middleware.process_exception(request, OperationalError("server closed the connection")) is None
