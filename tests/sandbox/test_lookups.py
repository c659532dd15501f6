"""The sandbox views' lookups as services (issue 25): client_get, clients_newest_first, user_get;
and the answers the views give through them (404 for an unknown client, as before)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from sandbox import services
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db

REDIRECT = ["http://127.0.0.1:9/cb"]


def test_client_get_and_the_newest_first_list():
    older = services.client_create(name="Older", redirect_uris=REDIRECT)
    newer = services.client_create(name="Newer", redirect_uris=REDIRECT)
    assert services.client_get(older.client_id) == older
    assert services.client_get("no-such-client") is None
    listed = [c.client_id for c in services.clients_newest_first()]
    assert listed.index(newer.client_id) < listed.index(older.client_id)


def test_user_get_is_none_for_a_user_that_no_longer_exists():
    user = services.user_create(username="ann", password="pw-ann-123456")
    assert services.user_get(user.pk) == user
    pk = user.pk
    user.delete()
    assert services.user_get(pk) is None


def test_the_control_api_and_page_answer_404_for_an_unknown_client(client, user, settings):
    settings.SANDBOX_CONTROL_TOKEN = "control-token"
    headers = {"HTTP_X_SANDBOX_CONTROL_TOKEN": "control-token"}
    for path in ("", "/faults", "/counters"):
        assert client.get(f"/sandbox/control/api/clients/no-such-client{path}", **headers).status_code == 404
    assert client.post(
        "/sandbox/control/api/clients/no-such-client/revoke-all", "{}", content_type="application/json", **headers
    ).status_code == 404
    known = services.client_create(name="Known", redirect_uris=REDIRECT)
    assert client.get(f"/sandbox/control/api/clients/{known.client_id}", **headers).json()["client_id"] == (
        known.client_id
    )
    user.is_staff = True
    user.save()
    with_second_factor(user)
    user.user_permissions.add(Permission.objects.get(codename="control_sandbox"))
    client.force_login(type(user).objects.get(pk=user.pk))
    assert client.post("/sandbox/control/clients/no-such-client/", {"latency_ms": "5"}).status_code == 404
