"""A healthy check writes the connection's EngineState and never its row (sealed tokens,
token_meta): the wide row changes only on connect, refresh, disconnect or a status change.
A connection the sweep does not check has no next check, so no claim reads its row."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.models import Connection, ConnectionStatus
from connections.state import check_scheduled
from engine.models import EngineState
from engine.sweep import _due, sweep_run

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


def test_a_check_that_finds_the_grant_dead_takes_the_connection_off_the_schedule(world):
    conn = world.connection(expires_in=30)  # the check refreshes first: the broker refuses the grant
    world.faults(refresh_invalid_grant=True)
    run = sweep_run()
    assert run.claimed == 1
    after = Connection.objects.select_related("engine_state").get(pk=conn.pk)
    assert after.status == ConnectionStatus.NEEDS_REAUTH
    assert after.next_check_at is None and after.lease_owner == ""
    assert sweep_run().claimed == 0


def _scans(plan: dict) -> list[dict]:
    """The plan's nodes that read a table (its heap or one of its indexes)."""
    found = [plan] if "Relation Name" in plan else []
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


@pytest.mark.skipif(db_connection.vendor != "postgresql", reason="reads PostgreSQL's plan")
def test_the_claim_reads_no_inactive_row(user):
    """Thousands of connections the sweep does not check (disconnected, archived, needing a
    reconnect) sit in no index the claim reads: its plan examines the due row and nothing else."""
    now = timezone.now()
    inactive = [
        Connection(user=user, broker_slug="sandbox", account_id=f"gone-{i}", status=status, archived_at=archived)
        for i in range(3000)
        for status, archived in [
            [(ConnectionStatus.DISCONNECTED, now), (ConnectionStatus.DISCONNECTED, None),
             (ConnectionStatus.NEEDS_REAUTH, None), (ConnectionStatus.FAILED, None)][i % 4]
        ]
    ]  # fmt: skip
    states = []
    for conn in inactive:
        conn.next_check_at = now - timedelta(days=30)  # what it had when it was last checked
        check_scheduled(conn, conn.status, now=now)  # what leaving the checked set does to it
        states.append(conn.engine_state_get())
    Connection.objects.bulk_create(inactive, batch_size=1000)
    EngineState.objects.bulk_create(states, batch_size=1000)
    due = Connection(user=user, broker_slug="sandbox", account_id="due", status=ConnectionStatus.CONNECTED)
    due.access_token = "a-token"
    due.next_check_at = now - timedelta(seconds=1)
    due.save()
    with db_connection.cursor() as cursor:
        cursor.execute("ANALYZE engine_enginestate")
        cursor.execute("ANALYZE connections_connection")

    candidates = _due(now, now).order_by("next_check_at").select_for_update(skip_locked=True, of=("self",))
    with transaction.atomic():
        plan = json.loads(candidates.values_list("pk", flat=True)[:500].explain(format="json", analyze=True))
    scans = _scans(plan[0]["Plan"])
    examined = sum(s.get("Actual Rows", 0) + s.get("Rows Removed by Filter", 0) for s in scans)
    assert examined <= 2, scans  # the due row's EngineState and its connection
    assert [s.get("Index Name") for s in scans if s["Relation Name"] == "engine_enginestate"] == [
        "enginestate_due_idx"
    ]


def test_the_connection_reads_every_column_of_its_engine_row_and_only_those():
    """connections.models.ENGINE_FIELDS (the Connection's shortcuts to its engine row) names
    exactly EngineState's own columns: a column added to one and not the other would be read
    from the wrong row or not saved."""
    from connections.models import ENGINE_FIELDS

    columns = {field.name for field in EngineState._meta.concrete_fields} - {"connection"}
    assert set(ENGINE_FIELDS) == columns
