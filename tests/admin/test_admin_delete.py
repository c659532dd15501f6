"""Security finding 1: admin deletes never bypass connection_disconnect, its permission check or the history."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from connections.models import Connection, ConnectionEvent, ConnectionStatus

pytestmark = pytest.mark.django_db(transaction=True)

CONNECTIONS = reverse("admin:connections_connection_changelist")
USERS = reverse("admin:accounts_user_changelist")


def test_delete_selected_is_not_offered_for_connections(world, staff_operator, admin_client_for):
    staff_operator.user_permissions.add(Permission.objects.get(codename="delete_connection"))
    conn = world.connection()
    client = admin_client_for(staff_operator)
    assert "delete_selected" not in client.get(CONNECTIONS).content.decode()
    client.post(CONNECTIONS, {"action": "delete_selected", "_selected_action": [str(conn.pk)], "post": "yes"})
    delete_url = reverse("admin:connections_connection_delete", args=[conn.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    conn.refresh_from_db()
    assert conn.status == ConnectionStatus.CONNECTED and conn.has_tokens


def test_deleting_a_user_keeps_their_connections_and_history(world, superadmin, admin_client_for):
    conn = world.connection()
    client = admin_client_for(superadmin)
    client.post(reverse("admin:accounts_user_delete", args=[world.user.pk]), {"post": "yes"})
    client.post(USERS, {"action": "delete_selected", "_selected_action": [world.user.pk], "post": "yes"})
    assert Connection.objects.filter(pk=conn.pk).exists()
    assert type(world.user).objects.filter(pk=world.user.pk).exists()


def test_disconnect_and_deactivate_revokes_under_the_permission_check(world, staff_operator, admin_client_for):
    conn = world.connection()
    staff_operator.user_permissions.add(Permission.objects.get(codename="change_user"))
    client = admin_client_for(staff_operator)
    before = world.counters()["revocations"]
    response = client.post(
        USERS, {"action": "disconnect_and_deactivate", "_selected_action": [world.user.pk]}, follow=True
    )
    assert "may not disconnect other people" in response.content.decode()
    conn.refresh_from_db()
    assert conn.has_tokens and world.counters()["revocations"] == before

    staff_operator.user_permissions.add(Permission.objects.get(codename="disconnect_others"))
    client.post(USERS, {"action": "disconnect_and_deactivate", "_selected_action": [world.user.pk]})
    conn.refresh_from_db()
    world.user.refresh_from_db()
    assert conn.status == ConnectionStatus.DISCONNECTED and not conn.has_tokens
    assert world.counters()["revocations"] > before
    assert conn.events.filter(kind=ConnectionEvent.Kind.REVOKED).exists()
    assert not world.user.is_active
