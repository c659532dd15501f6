"""What the connect-session review tests share: a partner app's return URL, an end user's
connection with tokens, the API's bearer header. Their fixtures are in conftest.py."""

from __future__ import annotations

from connections.models import Connection, ConnectionStatus

RETURN = "https://tracker.example/brokerlink/done"


def end_user_connection(end_user, account_id="acct-1", *, broker_app=None) -> Connection:
    connection = Connection(end_user=end_user, broker_slug="sandbox", account_id=account_id, broker_app=broker_app)
    connection.status = ConnectionStatus.CONNECTED
    connection.access_token = "access"
    connection.refresh_token = "refresh"
    connection.save()
    return connection


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}
