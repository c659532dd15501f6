"""Connect sessions and end users of a partner app (keys that belong to an app).

    POST   /connect-sessions                       a single-use link for one end user (or to reconnect)
    POST   /connections/{id}/disconnect            disconnect and revoke one connection
    POST   /end-users/{end_user_id}/disconnect     offboarding: every connection of that end user
    DELETE /end-users/{end_user_id}                forget a fully disconnected end user

Another app's end user or connection is a 404, as if it did not exist. The rules live in
partners.services; this module turns them into HTTP and the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from ninja import Schema, Status
from ninja.errors import HttpError

from api.models import Scope, ServiceKey
from api.views import ConnectionOut, Problem, _audit, _connection, _require, api
from common.ratelimit import RateLimited, rate_limit_hit
from partners.services import (
    EndUserBusy,
    SessionRequestInvalid,
    connect_session_create,
    connection_offboard,
    end_user_delete,
    end_user_disconnect_all,
    end_user_get,
    partners_setting,
)


class ValidationProblem(Schema):
    """django-ninja's answer to a body or parameter that does not match the schema (422)."""

    detail: list[dict]


# Every operation here may also answer 401 (no valid key) and 429 (the key's rate limit).
ALWAYS = {401: Problem, 429: Problem}


class EndUserIn(Schema):
    id: str
    email: str | None = None
    display_name: str | None = None


class ConnectSessionIn(Schema):
    end_user: EndUserIn | None = None
    brokers: list[str] | None = None
    environment: str | None = None
    return_url: str | None = None
    connection_id: UUID | None = None


class ConnectSessionOut(Schema):
    id: UUID
    url: str
    expires_at: datetime
    end_user_id: str
    reconnect: bool


class DisconnectOut(Schema):
    connection: ConnectionOut
    revoked: bool
    message: str


class OffboardOut(Schema):
    end_user_id: str
    connections: list[DisconnectOut]


def _app_key(request, scope: str, action: str) -> ServiceKey:
    key = _require(request, scope, action)
    if key.app_id is None:
        _audit(request, key, action, 403, result="Refused: not a partner app's key.")
        raise HttpError(403, "Only a key that belongs to a partner app can do this.")
    return key


def _end_user(request, key: ServiceKey, end_user_id: str, action: str):
    end_user = end_user_get(app=key.app, external_id=end_user_id)
    if end_user is None:
        _audit(request, key, action, 404, result="Refused: no such end user of this app.")
        raise HttpError(404, "No such end user.")
    return end_user


def _disconnect_out(connection, outcome) -> DisconnectOut:
    connection.refresh_from_db()
    return DisconnectOut(connection=ConnectionOut.of(connection), revoked=outcome.revoked, message=outcome.message)


@api.post(
    "/connect-sessions",
    response={
        201: ConnectSessionOut, 400: Problem, 403: Problem, 404: Problem, 409: Problem, 422: ValidationProblem, **ALWAYS
    },
    summary="A single-use connect link for one of the app's end users (or to reconnect a connection)",
    description="Send the end user's browser to `url` before `expires_at`. The first open spends the link and "
    "binds the session to that browser. `return_url` must be one of the app's allowed return URLs exactly.",
)
def create_connect_session(request, body: ConnectSessionIn):
    key = _app_key(request, Scope.CONNECT_SESSIONS, "session_create")
    retry_after = rate_limit_hit(
        f"connect-sessions:{key.pk}", limit=partners_setting("SESSIONS_PER_MINUTE"), per_seconds=60
    )
    if retry_after:
        _audit(request, key, "session_create", 429, result="Over the key's connect-session rate limit.")
        raise RateLimited(retry_after, "connect sessions of this key")
    try:
        session, url = connect_session_create(
            app=key.app,
            key_id=key.pk,
            end_user=body.end_user.model_dump() if body.end_user else None,
            brokers=body.brokers,
            environment=body.environment or "",
            return_url=body.return_url or "",
            connection_id=body.connection_id,
            key_brokers=key.broker_slugs or (),
        )
    except SessionRequestInvalid as exc:
        _audit(request, key, "session_create", exc.status, connection_id=body.connection_id, result=exc.message)
        raise HttpError(exc.status, exc.message) from None
    _audit(request, key, "session_create", 201, connection_id=session.connection_id,
           result=f"Session {session.pk} for end user {session.end_user.external_id}.")
    return Status(201, ConnectSessionOut(
        id=session.pk,
        url=url,
        expires_at=session.expires_at,
        end_user_id=session.end_user.external_id,
        reconnect=session.is_reconnect,
    ))


@api.post(
    "/connections/{connection_id}/disconnect",
    response={200: DisconnectOut, 403: Problem, 404: Problem, 422: ValidationProblem, **ALWAYS},
    summary="Disconnect the connection and revoke its tokens at the broker",
)
def disconnect_connection(request, connection_id: UUID):
    key = _require(request, Scope.MANAGE_END_USERS, "disconnect", connection_id)
    connection = _connection(request, key, connection_id, "disconnect")
    outcome = connection_offboard(connection)
    _audit(request, key, "disconnect", 200, connection_id=connection.pk, result=outcome.message)
    return _disconnect_out(connection, outcome)


@api.post(
    "/end-users/{end_user_id}/disconnect",
    response={200: OffboardOut, 403: Problem, 404: Problem, **ALWAYS},
    summary="Offboarding: disconnect and revoke every connection of one end user",
)
def disconnect_end_user(request, end_user_id: str):
    key = _app_key(request, Scope.MANAGE_END_USERS, "offboard")
    end_user = _end_user(request, key, end_user_id, "offboard")
    results = end_user_disconnect_all(end_user=end_user)
    for connection, outcome in results:
        _audit(request, key, "offboard", 200, connection_id=connection.pk, result=outcome.message)
    if not results:
        _audit(request, key, "offboard", 200, result=f"End user {end_user_id} has no connections.")
    return OffboardOut(
        end_user_id=end_user.external_id, connections=[_disconnect_out(c, o) for c, o in results]
    )


@api.delete(
    "/end-users/{end_user_id}",
    response={204: None, 403: Problem, 404: Problem, 409: Problem, **ALWAYS},
    summary="Delete a fully disconnected end user: their connections' history, sessions and details",
)
def delete_end_user(request, end_user_id: str):
    key = _app_key(request, Scope.MANAGE_END_USERS, "end_user_delete")
    end_user = _end_user(request, key, end_user_id, "end_user_delete")
    try:
        count = end_user_delete(end_user=end_user)
    except EndUserBusy:
        _audit(request, key, "end_user_delete", 409, result="Refused: connections not disconnected or not revoked.")
        raise HttpError(
            409,
            "The end user still has connections that are not disconnected, or whose revocation at the broker "
            "is not confirmed yet: disconnect the end user (again) first.",
        ) from None
    _audit(request, key, "end_user_delete", 204, result=f"Deleted, with {count} connection(s).")
    return Status(204, None)
