"""A healthy check writes the connection's EngineState and never its row (sealed tokens,
token_meta): the wide row changes only on connect, refresh, disconnect or a status change."""

from __future__ import annotations

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext

from connections.models import Connection, ConnectionStatus
from engine.models import EngineState
from engine.sweep import sweep_run

pytestmark = pytest.mark.django_db(transaction=True)


def _xmin(pk) -> str:
    """The transaction that wrote the row's current version (PostgreSQL): any UPDATE moves it."""
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM connections_connection WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_a_healthy_check_updates_the_engine_state_and_not_the_connection_row(world):
    conn = world.connection()
    first = sweep_run()  # the first check scores it; its status stays connected
    assert first.checked == 1
    assert Connection.objects.filter(pk=conn.pk).values_list("status", flat=True).get() == ConnectionStatus.CONNECTED
    EngineState.objects.filter(pk=conn.pk).update(next_check_at=conn.status_changed_at)  # due again
    before = Connection.objects.select_related("engine_state").get(pk=conn.pk)
    xmin = _xmin(conn.pk) if db_connection.vendor == "postgresql" else None

    with CaptureQueriesContext(db_connection) as queries:
        run = sweep_run()

    assert run.checked == 1 and run.failed == 0
    after = Connection.objects.select_related("engine_state").get(pk=conn.pk)
    assert after.status == ConnectionStatus.CONNECTED
    assert after.last_check_at > before.last_check_at
    assert after.next_check_at > before.next_check_at
    assert after.lease_owner == "" and after.lease_until is None
    assert after.updated_at == before.updated_at
    written = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert written, "the check wrote its EngineState"
    assert not [sql for sql in written if '"connections_connection"' in sql.split("SET")[0]], written
    if xmin is not None:
        assert _xmin(conn.pk) == xmin, "the connection's row has no new version"


def test_every_connection_gets_its_engine_state_when_created(user):
    conn = Connection.objects.create(user=user, broker_slug="sandbox", account_id="acct-new")
    state = EngineState.objects.get(pk=conn.pk)
    assert state.lease_owner == "" and state.next_check_at is not None
