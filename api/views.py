"""The HTTP API for services outside brokerlink (django-ninja), mounted at /api/v1/.

Authentication: `Authorization: Bearer blk_...` with a service key an admin created. The
OpenAPI schema is /api/v1/openapi.json; the rendered docs (Swagger UI, served from
brokerlink's own static files, no CDN) are /api/v1/docs. Everything a key does is written
to the audit trail (api.ApiAuditEntry); tokens never appear in a response except from the
token endpoint, and never in the audit trail or logs.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal
from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from ninja import Field, NinjaAPI, Path, Query, Schema
from ninja.errors import HttpError
from ninja.security.http import HttpAuthBase

from api.models import Scope, ServiceKey
from api.problems import PASSTHROUGH, Problem, openapi_document, problem_handlers_install
from api.services import (
    KeyCheck,
    api_audit_record,
    revoked_key_used,
    service_key_check,
    service_key_connection_get,
    service_key_connections_filtered,
)
from common.ratelimit import pause_left, pause_set, rate_limit_hit
from connections.errors import BrokerError
from connections.models import Connection, ConnectionStatus
from engine.models import Quality
from engine.services import (
    CheckBusy,
    ConnectionUnavailable,
    NeedsReauthentication,
    RateLimited,
    connection_api_url,
    connection_call,
    connection_check_now,
    connection_fresh,
    connection_refresh_now,
    connection_unsealed_token,
)
from ops.client_address import client_address

logger = logging.getLogger(__name__)

# Request headers passed on to the broker by the proxy; everything else stays here.
PROXIED_REQUEST_HEADERS = {"accept", "content-type", "accept-language", "if-none-match", "if-modified-since"}
# Response headers passed back from the broker.
PROXIED_RESPONSE_HEADERS = {"content-type", "retry-after", "etag", "last-modified", "cache-control"}
PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# A proxied path: segments relative to the broker's API base; no empty, "." or ".." segment, no
# backslash, control character, "?" or "#" (connection_api_url refuses what would leave the base;
# the schema says it up front, so a client generated from it cannot build such a request).
_CHAR = r"[^/\\\x00-\x1f\x7f?#]"
_FIRST = r"[^/\\\x00-\x1f\x7f?#.]"
_SEGMENT = rf"(?:{_FIRST}{_CHAR}*|\.{_FIRST}{_CHAR}*|\.\.{_CHAR}+)"
PROXY_PATH_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT})*/?$"
# Text filters: PostgreSQL cannot compare a string holding NUL; nothing longer is stored.
_TEXT = r"^[^\x00]*$"


class ServiceKeyAuth(HttpAuthBase):
    """`Authorization: Bearer blk_...`; unknown, revoked and expired keys get 401. Each key is
    rate limited (its `rate_limit_per_minute`, counted in Redis across processes).

    Every failed attempt is audited with the key's public prefix and the client address; a
    revoked key presented with its right secret alerts the operators; an address with more
    than API_AUTH_FAILURES_PER_MINUTE failures gets 429 until the minute is over."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    @sensitive_variables()
    def __call__(self, request: HttpRequest) -> ServiceKey | None:
        address = client_address(request)
        paused = pause_left(f"api-auth:{address}")
        if paused:
            raise RateLimited(paused, "failed authentications from this address")
        # Not ninja's HttpBearer: it logs the whole header in DEBUG when the scheme is wrong.
        header = request.headers.get("Authorization", "")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer":
            return self._failed(request, address, KeyCheck(None, "no_bearer_key" if header else "no_key"))
        check = service_key_check(raw.strip())
        if check.key is None:
            return self._failed(request, address, check)
        key = check.key
        retry_after = rate_limit_hit(f"apikey:{key.pk}", limit=key.rate_limit_per_minute, per_seconds=60)
        if retry_after:
            _audit(request, key, "rate_limited", 429, result="Over the key's rate limit.")
            raise RateLimited(retry_after, "this API key")
        return key

    @staticmethod
    def _failed(request, address: str, check: KeyCheck) -> None:
        _audit(request, check.found, "auth_failed", 401,
               result=f"Refused: {check.reason.replace('_', ' ')}; key prefix {check.prefix or '-'}.")
        if check.reason == "revoked":
            revoked_key_used(check, remote_addr=address)
        retry_after = rate_limit_hit(f"api-auth-failures:{address}", per_seconds=60,
                                     limit=int(getattr(settings, "API_AUTH_FAILURES_PER_MINUTE", 20)))
        if retry_after:
            pause_set(f"api-auth:{address}", retry_after)
            raise RateLimited(retry_after, "failed authentications from this address")
        return None


class BrokerlinkAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        # Every status and media type an operation can answer (api.problems).
        return openapi_document(super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params))


api = BrokerlinkAPI(
    title="brokerlink API",
    version="1",
    description="Connections, their health, broker calls through brokerlink, and tokens. "
    "Authenticate with `Authorization: Bearer <service key>`; see docs/integrating.md.",
    auth=ServiceKeyAuth(),
    urls_namespace="api",
)


problem_handlers_install(api)


# --- helpers -------------------------------------------------------------------------------


def _audit(request, key, action: str, status_code: int, *, connection_id=None, result: str = "") -> None:
    api_audit_record(
        key=key,
        action=action,
        status_code=status_code,
        connection_id=connection_id,
        method=request.method,
        path=request.path,
        result=result,
        remote_addr=client_address(request) or None,
    )


def _require(request, scope: str, action: str, connection_id=None) -> ServiceKey:
    key: ServiceKey = request.auth
    if scope not in key.scopes:
        label = Scope(scope).label
        _audit(request, key, action, 403, connection_id=connection_id, result=f"Refused: no {scope} scope.")
        raise HttpError(403, f"This key does not have the {scope} scope ({label}).")
    return key


def _connection(request, key: ServiceKey, connection_id: UUID, action: str) -> Connection:
    """The connection, if this key may see it; otherwise 404 as if it did not exist."""
    connection = service_key_connection_get(key, connection_id)
    if connection is None:
        _audit(request, key, action, 404, connection_id=connection_id, result="Refused: not visible to this key.")
        raise HttpError(404, "No such connection.")
    return connection


class ConnectionOut(Schema):
    id: UUID
    user_email: str
    # The app's own id of the end user who owns it (app keys); null for a brokerlink user's.
    end_user_id: str | None = None
    broker: str
    environment: str
    account: str
    label: str
    status: str
    status_label: str
    needs_reauth: bool
    health_score: int | None
    quality: str
    last_check_at: datetime | None
    last_success_at: datetime | None
    last_error_category: str
    last_error_message: str
    access_expires_at: datetime | None
    reauth_deadline_at: datetime | None

    @staticmethod
    def of(connection: Connection) -> ConnectionOut:
        return ConnectionOut(
            id=connection.pk,
            user_email=connection.user.email if connection.user_id else "",
            end_user_id=connection.end_user.external_id if connection.end_user_id else None,
            broker=connection.broker_slug,
            environment=connection.environment,
            account=connection.account_number_masked,
            label=connection.account_label,
            status=connection.status,
            status_label=ConnectionStatus(connection.status).label,
            needs_reauth=connection.status == ConnectionStatus.NEEDS_REAUTH,
            health_score=connection.health_score,
            quality=connection.quality,
            last_check_at=connection.last_check_at,
            last_success_at=connection.last_success_at,
            last_error_category=connection.last_error_category,
            last_error_message=connection.last_error_message,
            access_expires_at=connection.access_expires_at,
            reauth_deadline_at=connection.reauth_deadline_at,
        )


StatusValue = Literal[tuple(ConnectionStatus.values)]
QualityValue = Literal[tuple(Quality.values)]
EnvironmentValue = Literal["live", "paper"]


class ConnectionFilters(Schema):
    broker: str | None = Field(None, max_length=64, pattern=_TEXT)
    status: StatusValue | None = None
    environment: EnvironmentValue | None = None
    user_email: str | None = Field(None, max_length=254, pattern=_TEXT)
    end_user_id: str | None = Field(None, max_length=255, pattern=_TEXT)
    quality: QualityValue | None = None
    limit: int = Field(100, ge=1, le=500, description="At most this many connections (1-500).")
    offset: int = Field(0, ge=0, le=2**31 - 1, description="Skip this many connections first.")


class TokenOut(Schema):
    access_token: str
    token_type: str
    expires_at: datetime | None
    api_base_url: str


# --- endpoints -----------------------------------------------------------------------------


@api.get("/connections", response=list[ConnectionOut], summary="List connections and their health")
def list_connections(request, filters: Query[ConnectionFilters]):
    key = _require(request, Scope.READ_STATUS, "list")
    qs = service_key_connections_filtered(
        key,
        broker=filters.broker,
        status=filters.status,
        environment=filters.environment,
        user_email=filters.user_email,
        end_user_id=filters.end_user_id,
        quality=filters.quality,
    )
    rows = list(qs[filters.offset : filters.offset + filters.limit])
    _audit(request, key, "list", 200, result=f"{len(rows)} connection(s).")
    return [ConnectionOut.of(c) for c in rows]


@api.get("/connections/{connection_id}", response={200: ConnectionOut, 404: Problem}, summary="One connection")
def get_connection(request, connection_id: UUID):
    key = _require(request, Scope.READ_STATUS, "status", connection_id)
    connection = _connection(request, key, connection_id, "status")
    _audit(request, key, "status", 200, connection_id=connection.pk, result=connection.status)
    return ConnectionOut.of(connection)


@api.post(
    "/connections/{connection_id}/check",
    response={200: ConnectionOut, 404: Problem, 409: Problem},
    summary="Check the connection now (heartbeat with the engine's rules)",
)
def check_connection(request, connection_id: UUID):
    key = _require(request, Scope.READ_STATUS, "check", connection_id)
    connection = _connection(request, key, connection_id, "check")
    try:
        connection_check_now(connection)
    except CheckBusy:
        _audit(request, key, "check", 409, connection_id=connection.pk, result="A check is running.")
        raise HttpError(409, "A check of this connection is running right now; try again in a few seconds.") from None
    except ValueError:
        _audit(request, key, "check", 409, connection_id=connection.pk, result=f"Not active ({connection.status}).")
        raise HttpError(409, f"A {connection.status} connection is not checked.") from None
    connection.refresh_from_db()
    _audit(request, key, "check", 200, connection_id=connection.pk, result=connection.status)
    return ConnectionOut.of(connection)


@api.post(
    "/connections/{connection_id}/refresh",
    response={200: ConnectionOut, 404: Problem, 409: Problem, 502: Problem},
    summary="Refresh the tokens now (single-flight)",
)
def refresh_connection(request, connection_id: UUID):
    key = _require(request, Scope.CALL, "refresh", connection_id)
    connection = _connection(request, key, connection_id, "refresh")
    try:
        connection = connection_refresh_now(connection)
    except BrokerError as error:
        status = 409 if error.needs_reauth else 502
        detail = f"Connection {connection.pk} needs re-authentication: {error.message}" if error.needs_reauth else (
            error.message
        )
        _audit(request, key, "refresh", status, connection_id=connection.pk, result=detail)
        raise HttpError(status, detail) from None
    connection.refresh_from_db()
    _audit(request, key, "refresh", 200, connection_id=connection.pk, result="Refreshed.")
    return ConnectionOut.of(connection)


@api.get(
    "/connections/{connection_id}/token",
    response={200: TokenOut, 403: Problem, 404: Problem, 409: Problem},
    summary="A fresh access token (keys with the tokens:read scope only)",
)
def get_connection_token(request, connection_id: UUID):
    key = _require(request, Scope.READ_TOKENS, "token", connection_id)
    connection = _connection(request, key, connection_id, "token")
    try:
        fresh = connection_fresh(connection.pk)
        token = connection_unsealed_token(fresh)
    except ConnectionUnavailable as exc:
        _audit(request, key, "token", 409, connection_id=connection.pk, result=exc.message)
        raise HttpError(409, exc.message) from None
    _audit(request, key, "token", 200, connection_id=connection.pk,
           result=f"Token handed out (expires {fresh.access_expires_at:%Y-%m-%d %H:%M:%S} UTC)."
           if fresh.access_expires_at else "Token handed out.")
    return TokenOut(
        access_token=token,
        token_type="Bearer",  # noqa: S106 - the scheme name
        expires_at=fresh.access_expires_at,
        api_base_url=connection_api_url(fresh, "").rstrip("/"),
    )


@api.api_operation(
    PROXY_METHODS,
    "/connections/{connection_id}/proxy/{path:path}",
    response={400: Problem, 403: Problem, 404: Problem, 409: Problem, 429: Problem, 502: Problem},
    summary="Call the broker's API as this connection; the token never leaves brokerlink",
    description="The path (and query string) is relative to the broker's API base for this connection. The "
    "broker's status, body and content type come back as they are (any status, any media type); brokerlink's "
    "own errors are `application/problem+json`. A 401 gets one refresh and one retry.",
    openapi_extra={
        "requestBody": {"required": False, "description": "Sent to the broker as it is (POST, PUT, PATCH).",
                        "content": {"application/json": {"schema": {}}}},
        "responses": {"default": {"description": "The broker's answer, as it is.",
                                  "content": {PASSTHROUGH: {"schema": {}}}}},
    },
)
def proxy_to_broker(
    request, connection_id: UUID, path: str = Path(..., pattern=PROXY_PATH_PATTERN, examples=["v1/account"])
):
    key = _require(request, Scope.CALL, "proxy", connection_id)
    connection = _connection(request, key, connection_id, "proxy")
    headers = {k: v for k, v in request.headers.items() if k.lower() in PROXIED_REQUEST_HEADERS}
    body = request.body if request.method not in ("GET", "DELETE") else None
    started = timezone.now()
    try:
        answer = connection_call(
            connection.pk, request.method, path,
            params=[(k, v) for k, values in request.GET.lists() for v in values] or None,
            data=body or None, headers=headers, max_wait=2,
        )
    except NeedsReauthentication as exc:
        _audit(request, key, "proxy", 409, connection_id=connection.pk, result=exc.message)
        raise HttpError(409, exc.message) from None
    except ConnectionUnavailable as exc:
        _audit(request, key, "proxy", 409, connection_id=connection.pk, result=exc.message)
        raise HttpError(409, exc.message) from None
    except RateLimited as exc:
        _audit(request, key, "proxy", 429, connection_id=connection.pk, result=str(exc))
        raise
    except ValueError as exc:
        _audit(request, key, "proxy", 400, connection_id=connection.pk, result=str(exc))
        raise HttpError(400, str(exc)) from None
    except BrokerError as exc:
        _audit(request, key, "proxy", 502, connection_id=connection.pk, result=exc.message)
        raise HttpError(502, exc.message) from None
    response = HttpResponse(answer.content, status=answer.status)
    for name, value in answer.headers.items():
        if name.lower() in PROXIED_RESPONSE_HEADERS:
            response[name] = value
    elapsed = int((timezone.now() - started).total_seconds() * 1000)
    _audit(request, key, "proxy", answer.status, connection_id=connection.pk,
           result=f"{connection.broker_slug} answered HTTP {answer.status} in {elapsed} ms.")
    return response
