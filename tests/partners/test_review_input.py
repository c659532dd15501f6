"""Review of issue 28 (connect sessions): what an attacker or a careless caller tries, each a
test that failed before its fix (or pins a rule the review checked)."""

from __future__ import annotations

import pytest

from api.models import Scope
from api.services import service_key_create
from partners.models import ConnectSession, EndUser
from tests.partners.support import bearer

# --- bad input is a documented 4xx, never a 500 ----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "end_user",
    [
        {"id": "u\x00-1"},
        {"id": "u-1", "email": "not-an-email"},
        {"id": "u-1", "email": "a" * 250 + "@example.com"},
        {"id": "u-1", "display_name": "x" * 256},
        {"id": "u-1", "display_name": "Ada\x00"},
        {"id": "u-1\n"},
    ],
)
def test_bad_end_user_details_are_a_400_not_a_500(client, tracker, sandbox_app, end_user):
    _k, key = service_key_create(name="t", scopes=[Scope.CONNECT_SESSIONS], app=tracker)
    client.raise_request_exception = False
    answer = client.post(
        "/api/v1/connect-sessions", {"end_user": end_user}, content_type="application/json", headers=bearer(key)
    )
    assert answer.status_code == 400, answer.content
    assert answer.json()["detail"]
    assert not EndUser.objects.exists() and not ConnectSession.objects.exists()


@pytest.mark.django_db
def test_malformed_end_user_ids_in_paths_and_filters_are_404_or_422_never_500(client, tracker):
    _k, key = service_key_create(
        name="t", scopes=[Scope.MANAGE_END_USERS, Scope.READ_STATUS, Scope.CONNECT_SESSIONS], app=tracker
    )
    client.raise_request_exception = False
    for path in ("/api/v1/end-users/u%001", "/api/v1/end-users/" + "é" * 300):
        assert client.delete(path, headers=bearer(key)).status_code == 404
        assert client.post(path + "/disconnect", headers=bearer(key)).status_code == 404
    listing = client.get("/api/v1/connections", {"end_user_id": "u\x001"}, headers=bearer(key))
    # A NUL in a filter is a documented 422 problem (api.problems), never a 500.
    assert listing.status_code == 422 and listing["Content-Type"].startswith("application/problem+json")
    reconnect = client.post(
        "/api/v1/connect-sessions",
        {"connection_id": "not-a-uuid"},
        content_type="application/json",
        headers=bearer(key),
    )
    assert reconnect.status_code in (400, 422)


