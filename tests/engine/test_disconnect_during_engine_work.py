"""A disconnect while a refresh or a check is out stands: neither brings tokens or a status back."""

from __future__ import annotations

import threading

from django.db import connection as db_connection

from connections.models import Connection, ConnectionStatus
from connections.services.disconnect import connection_disconnect
from engine.refresh import ANSWER_DROPPED, connection_refresh
from tests.support import wait_for


def test_a_refresh_answered_after_a_disconnect_leaves_the_disconnected_row_without_tokens(world):
    conn = world.connection()
    world.faults(latency_ms=1500)  # the refresh is still out when the person disconnects
    results = {}

    def refresh() -> None:
        try:
            results["refresh"] = connection_refresh(conn.pk, reason="manual", force=True)
        finally:
            db_connection.close()

    thread = threading.Thread(target=refresh)
    thread.start()
    wait_for(
        lambda: Connection.objects.filter(pk=conn.pk).exclude(refresh_claim_owner="").exists(),
        timeout=10,
        what="the refresh claimed the row",
    )
    connection_disconnect(Connection.objects.get(pk=conn.pk))
    thread.join(timeout=30)
    assert not thread.is_alive()

    row = Connection.objects.get(pk=conn.pk)
    assert row.status == ConnectionStatus.DISCONNECTED
    assert (row.access_token_sealed, row.refresh_token_sealed) == ("", "")
    assert (row.refresh_claim_owner, row.refresh_sent_at) == ("", None)
    assert results["refresh"].refreshed is False and results["refresh"].reason == ANSWER_DROPPED


def test_a_check_that_ends_after_a_disconnect_does_not_bring_the_connection_back(world):
    from engine.models import EngineState
    from engine.sweep import sweep_run

    conn = world.connection()
    # The check is still out when the person disconnects, and its answer would change the status.
    world.faults(latency_ms=1500, error_5xx_rate=1.0)
    done = {}

    def sweep() -> None:
        try:
            done["run"] = sweep_run()
        finally:
            db_connection.close()

    thread = threading.Thread(target=sweep)
    thread.start()
    wait_for(
        lambda: EngineState.objects.filter(pk=conn.pk).exclude(lease_owner="").exists(),
        timeout=10,
        what="the sweep leased the connection",
    )
    connection_disconnect(Connection.objects.get(pk=conn.pk))
    thread.join(timeout=30)
    assert not thread.is_alive() and done["run"].claimed == 1

    row = Connection.objects.get(pk=conn.pk)
    assert row.status == ConnectionStatus.DISCONNECTED
    assert list(row.events.values_list("to_status", flat=True).exclude(to_status="").order_by("created_at")) == [
        ConnectionStatus.DISCONNECTED
    ]
