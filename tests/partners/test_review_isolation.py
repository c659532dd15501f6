"""Review of issue 28 (connect sessions): what an attacker or a careless caller tries, each a
test that failed before its fix (or pins a rule the review checked)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from api.models import ApiAuditEntry, Scope
from api.services import service_key_create
from connections.models import ConnectionStatus
from partners.models import EndUser
from partners.services import (
    end_user_upsert,
)
from tests.partners.support import bearer, end_user_connection

# --- isolation between apps over the API -------------------------------------------------------


@pytest.mark.django_db
def test_another_apps_key_gets_404_for_its_end_users_connections_and_sessions(client, tracker, bot, sandbox_app):
    mine = end_user_connection(end_user_upsert(app=tracker, external_id="u-1"))
    _k, theirs = service_key_create(
        name="bot",
        scopes=[Scope.MANAGE_END_USERS, Scope.READ_STATUS, Scope.CONNECT_SESSIONS, Scope.CALL, Scope.READ_TOKENS],
        app=bot,
        expires_at=timezone.now() + timedelta(days=1),
    )
    headers = bearer(theirs)
    assert client.get(f"/api/v1/connections/{mine.pk}", headers=headers).status_code == 404
    assert client.get(f"/api/v1/connections/{mine.pk}/token", headers=headers).status_code == 404
    assert client.post(f"/api/v1/connections/{mine.pk}/disconnect", headers=headers).status_code == 404
    assert client.post("/api/v1/end-users/u-1/disconnect", headers=headers).status_code == 404
    assert client.delete("/api/v1/end-users/u-1", headers=headers).status_code == 404
    assert client.get("/api/v1/connections", {"end_user_id": "u-1"}, headers=headers).json() == []
    reconnect = client.post(
        "/api/v1/connect-sessions", {"connection_id": str(mine.pk)}, content_type="application/json", headers=headers
    )
    assert reconnect.status_code == 404
    # The bot's own end user "u-1" is another person than the tracker's "u-1".
    created = client.post(
        "/api/v1/connect-sessions", {"end_user": {"id": "u-1"}}, content_type="application/json", headers=headers
    )
    assert created.status_code == 201
    assert EndUser.objects.filter(external_id="u-1").count() == 2
    mine.refresh_from_db()
    assert mine.status == ConnectionStatus.CONNECTED and mine.has_tokens
    assert ApiAuditEntry.objects.filter(status_code=404).count() >= 6


