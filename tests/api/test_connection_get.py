"""api.services.service_key_connection_get: one connection, only within the key's reach (issue 25:
the endpoints' `_connection` helper calls it, then audits and answers 404 as if it did not exist)."""

from __future__ import annotations

import uuid

import pytest

from api.models import ApiAuditEntry, Scope
from api.services import service_key_connection_get, service_key_create
from connections.models import Connection

pytestmark = pytest.mark.django_db


def test_a_connection_out_of_reach_is_none_like_an_unknown_one(user, other_user):
    mine = Connection.objects.create(user=user, broker_slug="sandbox", account_id="1")
    theirs = Connection.objects.create(user=other_user, broker_slug="sandbox", account_id="2")
    other_broker = Connection.objects.create(user=user, broker_slug="alpaca", account_id="3")
    key, _ = service_key_create(name="k", scopes=[Scope.READ_STATUS], broker_slugs=["sandbox"], users=[user])
    assert service_key_connection_get(key, mine.pk) == mine
    assert service_key_connection_get(key, theirs.pk) is None
    assert service_key_connection_get(key, other_broker.pk) is None
    assert service_key_connection_get(key, uuid.uuid4()) is None
    nobody, _ = service_key_create(name="none listed", scopes=[Scope.READ_STATUS])
    assert service_key_connection_get(nobody, mine.pk) is None


def test_the_endpoint_answers_404_and_audits_a_connection_out_of_reach(client, user, other_user):
    theirs = Connection.objects.create(user=other_user, broker_slug="sandbox", account_id="2")
    mine = Connection.objects.create(user=user, broker_slug="sandbox", account_id="1")
    _, plaintext = service_key_create(name="k", scopes=[Scope.READ_STATUS], users=[user])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}
    answer = client.get(f"/api/v1/connections/{theirs.pk}", **auth)
    assert answer.status_code == 404
    assert answer.json()["detail"] == "No such connection."
    entry = ApiAuditEntry.objects.filter(action="status").latest("created_at")
    assert (entry.status_code, entry.connection_id, entry.result) == (
        404, theirs.pk, "Refused: not visible to this key."
    )
    assert client.get(f"/api/v1/connections/{mine.pk}", **auth).json()["id"] == str(mine.pk)
