"""Connection admin: actions against the sandbox over HTTP, permissions, events, no tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from connections.models import ConnectionEvent, ConnectionStatus
from engine.models import CircuitBreaker
from pages.admin import ConnectionAdmin
from tests.engine.history import stored_checks

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = reverse("admin:connections_connection_changelist")


def run_action(client, action: str, *connections, follow=True):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(c.pk) for c in connections]},
        follow=follow,
    )


def admin_events(connection):
    return list(connection.events.filter(kind=ConnectionEvent.Kind.ADMIN_ACTION))


def test_check_now_calls_the_sandbox_and_records_the_admin(world, superadmin, admin_client_for):
    conn = world.connection()
    before = world.counters()["account_calls"]
    response = run_action(admin_client_for(superadmin), "check_now", conn)
    assert response.status_code == 200
    assert world.counters()["account_calls"] == before + 1
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.CONNECTED
    assert [c.ok for c in stored_checks(conn)] == [True]
    (event,) = admin_events(conn)
    assert event.actor == superadmin
    assert event.message.startswith("An administrator ran “check now”") and "root@example.com" not in event.message
    assert "heartbeat passed" in response.content.decode()


def test_refresh_now_rotates_the_tokens_at_the_sandbox(world, superadmin, admin_client_for):
    conn = world.connection()
    old_sealed = conn.access_token_sealed
    before = world.counters()["refreshes"]
    run_action(admin_client_for(superadmin), "refresh_now", conn)
    assert world.counters()["refreshes"] == before + 1
    conn.refresh_from_db()
    assert conn.access_token_sealed != old_sealed
    assert conn.events.filter(kind=ConnectionEvent.Kind.REFRESHED).count() == 1
    (event,) = admin_events(conn)
    assert "An administrator" in event.message and "refresh now" in event.message and "refreshed" in event.message


def test_staff_without_the_permission_cannot_disconnect_someone_elses_connection(
    world, staff_operator, admin_client_for
):
    conn = world.connection()  # belongs to ada@example.com
    before = world.counters()["revocations"]
    response = run_action(admin_client_for(staff_operator), "disconnect_and_revoke", conn)
    assert "may not disconnect other people" in response.content.decode()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.CONNECTED and conn.has_tokens
    assert world.counters()["revocations"] == before
    assert not conn.events.filter(kind__in=[ConnectionEvent.Kind.DISCONNECTED, ConnectionEvent.Kind.ADMIN_ACTION])


def test_staff_with_the_permission_disconnects_and_revokes(world, staff_operator, admin_client_for):
    staff_operator.user_permissions.add(Permission.objects.get(codename="disconnect_others"))
    conn = world.connection()
    before = world.counters()["revocations"]
    response = run_action(admin_client_for(staff_operator), "disconnect_and_revoke", conn)
    assert "Revoked at Sandbox Broker" in response.content.decode()
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.DISCONNECTED and not conn.has_tokens
    assert world.counters()["revocations"] - before >= 1
    assert conn.events.get(kind=ConnectionEvent.Kind.DISCONNECTED).actor == staff_operator
    (event,) = admin_events(conn)
    assert event.actor == staff_operator
    assert "An administrator" in event.message and "disconnect and revoke" in event.message


def test_reset_circuit_closes_the_brokers_breaker(world, superadmin, admin_client_for):
    later = timezone.now() + timezone.timedelta(hours=1)
    conn = world.connection(status=ConnectionStatus.BROKER_OUTAGE, next_check_at=later)
    CircuitBreaker.objects.create(
        broker_slug="sandbox", state="open", failure_count=9, opened_at=timezone.now(),
        next_probe_at=timezone.now() + timezone.timedelta(hours=1),
    )
    run_action(admin_client_for(superadmin), "reset_circuit", conn)
    breaker = CircuitBreaker.objects.get(broker_slug="sandbox")
    assert breaker.state == "closed" and breaker.failure_count == 0 and breaker.next_probe_at is None
    conn.refresh_from_db()
    assert conn.next_check_at <= timezone.now()  # due at the next sweep
    (event,) = admin_events(conn)
    assert "An administrator" in event.message and "reset circuit" in event.message


def test_circuit_breaker_admin_reset_action(world, superadmin, admin_client_for):
    conn = world.connection(status=ConnectionStatus.BROKER_OUTAGE)
    breaker = CircuitBreaker.objects.create(broker_slug="sandbox", state="open", failure_count=5)
    admin_client_for(superadmin).post(
        reverse("admin:engine_circuitbreaker_changelist"),
        {"action": "reset", "_selected_action": [breaker.pk]},
    )
    breaker.refresh_from_db()
    assert breaker.state == "closed"
    assert admin_events(conn)[0].actor.email == "root@example.com"


def test_no_token_is_ever_rendered(world, superadmin, admin_client_for):
    conn = world.connection()
    client = admin_client_for(superadmin)
    run_action(client, "check_now", conn)  # some history for the inline
    conn.refresh_from_db()
    secrets = [conn.access_token, conn.refresh_token, conn.access_token_sealed, conn.refresh_token_sealed]
    assert all(secrets)
    pages = [
        client.get(CHANGELIST),
        client.get(CHANGELIST, {"q": "ada@example.com"}),
        client.get(reverse("admin:connections_connection_change", args=[conn.pk])),
        client.get(reverse("admin:connections_connectionevent_changelist")),
    ]
    for page in pages:
        assert page.status_code == 200
        body = page.content.decode()
        for secret in secrets:
            assert secret not in body
    change = pages[2].content.decode()
    assert "present, expires at" in change
    assert "access_token_sealed" not in change and "refresh_token_sealed" not in change
    assert "ada@example.com" in pages[1].content.decode()


def test_changelist_columns_filters_and_search(world, superadmin, admin_client_for):
    conn = world.connection(account_number_masked="****4321", quality="good", health_score=80)
    client = admin_client_for(superadmin)
    body = client.get(CHANGELIST, {"q": "4321"}).content.decode()
    assert "****4321" in body and "ada@example.com" in body
    filtered = {"status__exact": "connected", "engine_state__quality__exact": "good"}
    assert client.get(CHANGELIST, filtered).status_code == 200
    assert "****4321" not in client.get(CHANGELIST, {"q": "nobody"}).content.decode()
    assert conn.pk


def test_the_owner_sees_an_administrator_and_admin_keeps_the_identity(world, superadmin, admin_client_for):
    """Security finding 12: the owner's timeline never shows the administrator's email."""
    from django.contrib.admin.models import LogEntry
    from django.test import Client

    conn = world.connection()
    run_action(admin_client_for(superadmin), "check_now", conn)
    owner = Client()
    owner.force_login(world.user)
    timeline = owner.get(reverse("connections:detail", args=[conn.pk])).content.decode()
    assert "An administrator ran" in timeline and "root@example.com" not in timeline
    entry = LogEntry.objects.get(object_id=str(conn.pk))
    assert entry.user == superadmin and "check now" in entry.change_message


def test_changelist_sorts_by_next_check_to_find_overdue_connections(world, superadmin, admin_client_for):
    later = world.connection(account_number_masked="****1111", next_check_at=timezone.now() + timedelta(hours=1))
    overdue = world.connection(account_number_masked="****2222", next_check_at=timezone.now() - timedelta(hours=1))
    client = admin_client_for(superadmin)
    columns = ConnectionAdmin.list_display
    body = client.get(CHANGELIST, {"o": str(columns.index("next_check") + 1)}).content.decode()
    assert body.index("****2222") < body.index("****1111"), "oldest next check first"
    assert overdue.pk and later.pk
