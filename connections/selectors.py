"""Reads of connections, always scoped to their owner."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from connections.models import Connection, ConnectionStatus


def connection_list_for_user(*, user) -> QuerySet[Connection]:
    return (
        Connection.objects.filter(user=user)
        .exclude(status=ConnectionStatus.DISCONNECTED)
        .select_related("broker_app")
        .order_by("broker_slug", "account_number_masked")
    )


def connection_list_disconnected_for_user(*, user) -> QuerySet[Connection]:
    return (
        Connection.objects.filter(user=user, status=ConnectionStatus.DISCONNECTED)
        .select_related("broker_app")
        .order_by("-disconnected_at")
    )


def connection_get_for_user(*, user, connection_id) -> Connection:
    """Another user's connection is a 404, never a 403: its existence is not disclosed."""
    return get_object_or_404(Connection, pk=connection_id, user=user)
