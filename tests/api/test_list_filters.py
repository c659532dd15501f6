"""The list endpoint's filters as a service (issue 25: api/views.py parses the query and calls
api.services.service_key_connections_filtered); the endpoint itself is in test_http_api.py."""

from __future__ import annotations

import pytest

from api.models import Scope
from api.services import service_key_connections_filtered, service_key_create
from connections.models import Connection, ConnectionStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def key():
    return service_key_create(name="svc", scopes=[Scope.READ_STATUS], all_users=True)[0]


def _ids(qs):
    return [c.account_id for c in qs]


def test_filters_narrow_newest_first_and_empty_ones_narrow_nothing(key, user, other_user):
    Connection.objects.create(user=user, broker_slug="sandbox", account_id="old", environment="paper")
    Connection.objects.create(
        user=other_user, broker_slug="alpaca", account_id="mid", environment="live", status=ConnectionStatus.DEGRADED
    )
    Connection.objects.create(user=user, broker_slug="sandbox", account_id="new", environment="live")
    assert _ids(service_key_connections_filtered(key)) == ["new", "mid", "old"]
    assert _ids(service_key_connections_filtered(key, broker="", status=None)) == ["new", "mid", "old"]
    assert _ids(service_key_connections_filtered(key, broker="sandbox")) == ["new", "old"]
    assert _ids(service_key_connections_filtered(key, environment="live", broker="sandbox")) == ["new"]
    assert _ids(service_key_connections_filtered(key, status=ConnectionStatus.DEGRADED)) == ["mid"]
    assert _ids(service_key_connections_filtered(key, user_email=other_user.email.upper())) == ["mid"]


def test_an_end_user_id_no_end_user_can_have_matches_nothing(key, user):
    Connection.objects.create(user=user, broker_slug="sandbox", account_id="1")
    assert _ids(service_key_connections_filtered(key, end_user_id="u\x00")) == []
    assert _ids(service_key_connections_filtered(key, end_user_id="u-1")) == []  # a user's, not an end user's
