"""The callback's and Reconnect's rules as services (issue 25: the view parses, calls one service,
shows its answer). The whole flow against the sandbox is in test_connect*.py and test_handback.py."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore

from connections.models import Connection, ConnectionStatus
from connections.oauth_flow import PURPOSE_CONNECT, PURPOSE_RECONNECT
from connections.services import connect
from connections.services.callback import connection_callback_finish

pytestmark = pytest.mark.django_db


def _request(rf, user, **params):
    request = rf.get("/connections/callback/sandbox/", params)
    request.user = user
    request.session = SessionStore()
    return request


def test_nobody_signed_in_and_no_hand_off_means_sign_in_first(rf):
    request = _request(rf, AnonymousUser(), state="abc", code="x")
    result = connection_callback_finish(request, slug="sandbox", params=request.GET)
    assert result.sign_in and result.outcome is None and not result.failure


@pytest.mark.parametrize(
    ("params", "failure"),
    [({"code": "x"}, "state_missing"), ({"state": "never-issued", "code": "x"}, "state_unknown")],
)
def test_a_state_this_session_did_not_issue_fails_before_any_exchange(rf, user, params, failure):
    request = _request(rf, user, **params)
    result = connection_callback_finish(request, slug="sandbox", params=request.GET)
    assert result.failure == failure and result.connection_id == "" and result.response is None


def test_sandbox_off_refuses_its_callback(rf, user, settings):
    settings.SANDBOX_ENABLED = False
    request = _request(rf, user, state="abc", code="x")
    result = connection_callback_finish(request, slug="sandbox", params=request.GET)
    assert result.failure == "not_configured"


@pytest.mark.parametrize(
    ("status", "purpose", "names_connection"),
    [
        (ConnectionStatus.NEEDS_REAUTH, PURPOSE_RECONNECT, True),
        (ConnectionStatus.CONNECTED, PURPOSE_RECONNECT, True),
        # After a disconnect only a full new authorization brings the account back.
        (ConnectionStatus.DISCONNECTED, PURPOSE_CONNECT, False),
    ],
)
def test_reconnect_after_a_disconnect_is_a_new_connect(monkeypatch, user, status, purpose, names_connection):
    asked = {}
    monkeypatch.setattr(connect, "connect_authorize_url", lambda request, **kwargs: asked.update(kwargs) or "url")
    connection = Connection.objects.create(
        user=user, broker_slug="sandbox", environment="paper", account_id="1", status=status
    )
    assert connect.connection_reconnect_url(None, connection) == "url"
    assert asked["purpose"] == purpose and asked["slug"] == "sandbox" and asked["environment"] == "paper"
    assert asked.get("connection_id", "") == (str(connection.pk) if names_connection else "")
