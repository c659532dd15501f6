"""Using a connection from code in the same Django project (Celery tasks, views).

For other code in the project:

    from engine.services import connection_access_token, connection_call, NeedsReauthentication

    token = connection_access_token(connection_id)            # a valid access token, refreshed if due
    answer = connection_call(connection_id, "GET", "v1/account")
    answer.status, answer.body, answer.headers                 # the broker's answer

- `connection_access_token` never returns a stale token. A token close to expiry is refreshed
  first through the engine's single-flight `connection_refresh`; a dead grant raises
  `NeedsReauthentication` (and moves the connection to "needs re-authentication"); any other
  reason there is no usable token raises `ConnectionUnavailable` with a precise message.
- `connection_call` sends one request to the broker's API for this connection: the base URL
  comes from the broker profile for the connection's environment and token (Questrade's
  per-token `api_server`). A 401 gets one forced refresh and one retry; a 429 pauses every
  process's calls to that broker for its Retry-After and is retried once when the wait is
  short (`max_wait`), else returned as it is. Calls stay under the broker's documented rate
  limit across processes (a Redis counter, common.ratelimit). Network failures raise
  `BrokerError` (category "network"); every HTTP answer is returned, errors included.
- Calls made for integrations are kept apart from the heartbeat's history: they are logged
  (`connections.api.call`), never stored as checks, so they count in no uptime, health score,
  history square or broker alert. A caller's mistake (a shell whose SITE_URL or
  SANDBOX_BASE_URL points nowhere, a wrong path) fails the caller, not the person's connection.
  What the broker says about the grant itself still counts: a token it rejects is refreshed,
  and a dead grant moves the connection to "needs re-authentication".

Tokens never appear in exceptions or logs.

The manual actions (pages, admin, API) live here too: "Check now" (`connection_check_now`) and
"Refresh now" (`connection_refresh_now`), with the sweep's rules.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from common.ratelimit import RateLimited, pause_left, pause_set, rate_limit_wait
from connections import errors
from connections.broker_client import BrokerResponse, broker_call, profile_for
from connections.errors import BrokerError
from connections.models import Connection, ConnectionStatus
from connections.state import INACTIVE_STATUSES, connection_transition
from engine.batch import Outcome
from engine.check import connections_check
from engine.conf import engine_setting
from engine.models import EngineState
from engine.refresh import IN_PROGRESS, OUTCOME_UNKNOWN, connection_refresh, refresh_due
from vault.crypto import VaultError

logger = logging.getLogger(__name__)

__all__ = [
    "CheckBusy",
    "CheckTooSoon",
    "ConnectionUnavailable",
    "NeedsReauthentication",
    "RateLimited",
    "check_now_allowed",
    "connection_access_token",
    "connection_call",
    "connection_check_now",
    "connection_refresh_now",
]

# Request headers a caller may not set: brokerlink sets the credentials and the host.
DROPPED_HEADERS = {"authorization", "cookie", "host", "content-length", "connection", "proxy-authorization"}
# A token this close to its expiry is refreshed before it is handed out.
MIN_TOKEN_LIFE = timedelta(seconds=30)
DEFAULT_MAX_WAIT = 5.0
# How long a caller waits for a refresh another process is making, instead of making its own.
REFRESH_WAIT_SECONDS = 10.0


class ConnectionUnavailable(Exception):
    """The connection has no usable access token right now (disconnected, refresh failed...)."""

    def __init__(self, connection_id, message: str, *, category: str = ""):
        self.connection_id = connection_id
        self.message = message
        self.category = category
        super().__init__(message)


class NeedsReauthentication(ConnectionUnavailable):
    """The grant is dead: the user must reconnect the account. Never retried."""


def _unavailable_for_status(connection: Connection) -> ConnectionUnavailable:
    if connection.status == ConnectionStatus.NEEDS_REAUTH:
        return NeedsReauthentication(
            connection.pk,
            f"Connection {connection.pk} needs re-authentication: the user must reconnect the account.",
            category=errors.AUTH,
        )
    label = ConnectionStatus(connection.status).label.lower()
    return ConnectionUnavailable(connection.pk, f"Connection {connection.pk} is {label}: it has no usable token.")


def _dead_grant(connection: Connection, error: BrokerError, actor) -> NeedsReauthentication:
    connection.refresh_from_db()
    if connection.status not in INACTIVE_STATUSES:
        connection_transition(
            connection=connection,
            to_status=ConnectionStatus.NEEDS_REAUTH,
            message=error.message,
            category=error.category,
            actor=actor,
        )
    return NeedsReauthentication(
        connection.pk, f"Connection {connection.pk} needs re-authentication: {error.message}", category=errors.AUTH
    )


def _usable(connection: Connection, *, now, margin: timedelta) -> bool:
    return bool(connection.access_token_sealed) and (
        connection.access_expires_at is None or connection.access_expires_at - now > margin
    )


def connection_fresh(connection_id, *, actor=None) -> Connection:
    """The connection with a valid access token, refreshed first when it is due.

    Raises Connection.DoesNotExist, NeedsReauthentication or ConnectionUnavailable."""
    connection = Connection.objects.select_related("broker_app").get(pk=connection_id)
    if connection.status in INACTIVE_STATUSES or connection.status == ConnectionStatus.PENDING:
        raise _unavailable_for_status(connection)
    profile = profile_for(connection.broker_slug, connection.environment)
    now = timezone.now()
    # Fast path without the refresh's row claim: by the engine's own rule nothing is due.
    if _usable(connection, now=now, margin=MIN_TOKEN_LIFE) and not refresh_due(connection, profile, now=now):
        return connection
    try:
        # "expiring": the same routine refresh the engine makes ahead of expiry.
        result = connection_refresh(connection.pk, reason="expiring", actor=actor, wait=REFRESH_WAIT_SECONDS)
    except BrokerError as error:
        if error.needs_reauth:
            raise _dead_grant(connection, error, actor) from None
        connection.refresh_from_db()
        if _usable(connection, now=timezone.now(), margin=MIN_TOKEN_LIFE):
            return connection  # the refresh failed, but the current token is still good for a while
        raise ConnectionUnavailable(
            connection.pk, f"Connection {connection.pk} has no valid token: {error.message}", category=error.category
        ) from None
    connection = result.connection
    if result.reason == "inactive":
        raise _unavailable_for_status(connection)
    if not _usable(connection, now=timezone.now(), margin=timedelta(0)):
        why = {
            IN_PROGRESS: "a refresh is still in progress; try again in a few seconds",
            OUTCOME_UNKNOWN: "the broker did not answer the last refresh; brokerlink is waiting before it asks again",
        }.get(result.reason, "its access token has expired")
        raise ConnectionUnavailable(connection.pk, f"Connection {connection.pk} has no valid token: {why}.")
    return connection


@sensitive_variables()
def connection_access_token(connection_id, *, actor=None) -> str:
    """A valid access token for this connection (see the module docstring)."""
    return connection_unsealed_token(connection_fresh(connection_id, actor=actor))


@sensitive_variables()
def connection_unsealed_token(connection: Connection) -> str:
    """The connection's access token in clear (for the HTTP API's token endpoint); raises
    ConnectionUnavailable when the stored ciphertext cannot be opened."""
    try:
        return connection.access_token
    except VaultError:
        # One unreadable ciphertext fails this connection alone, with a message that says so.
        raise ConnectionUnavailable(
            connection.pk,
            f"Connection {connection.pk}: the stored access token cannot be decrypted with the "
            "configured keys (TOKEN_ENCRYPTION_KEYS).",
            category=errors.CONFIGURATION,
        ) from None


# A percent-encoded dot, slash or backslash, however many times the `%` itself was encoded
# (`%2e`, `%252e`, `%25252e`…): a broker or a proxy in front of it may decode again.
_ENCODED_SEPARATOR = re.compile(r"%(?:25)*(?:2e|2f|5c)", re.IGNORECASE)


def broker_path_problem(path: str) -> str | None:
    """Why `path` may not be appended to a broker's API base, or None (pure)."""
    refused = "The path must be relative to the broker's API base."
    if _ENCODED_SEPARATOR.search(path):
        return "The path must not contain encoded dots, slashes or backslashes."
    if "://" in path or path.startswith("//") or "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        return refused
    if any(part in (".", "..") for part in path.split("/")):
        return refused
    return None


def connection_api_url(connection: Connection, path: str) -> str:
    """The broker URL for `path` (relative to the API base of this connection's environment
    and token). Refuses anything that could leave the broker's API base: dot segments and
    separators, encoded at any depth; and the built URL must still start with the base
    (scheme, host, port and path prefix)."""
    problem = broker_path_problem(path)
    if problem:
        raise ValueError(problem)
    profile = profile_for(connection.broker_slug, connection.environment)
    base = profile.hooks.api_base_url(profile, environment=connection.environment, token_meta=connection.token_meta)
    url = f"{base.rstrip('/')}/{path.lstrip('/')}"
    if not url_within_base(url, base):
        raise ValueError("The path must be relative to the broker's API base.")
    return url


def url_within_base(url: str, base: str) -> bool:
    """True when `url` has the base's scheme, host and port and its path under the base's path."""
    built, root = urlsplit(url), urlsplit(base)
    prefix = root.path.rstrip("/") + "/"
    return (
        (built.scheme, built.hostname, built.port) == (root.scheme, root.hostname, root.port)
        and (built.path + "/").startswith(prefix)
        and not built.username and not built.password
    )


def _limit_key(connection: Connection) -> str:
    # Brokers count calls per app (client id): every connection through one app shares the budget.
    return f"broker:{connection.broker_slug}:{connection.broker_app_id or connection.environment}"


def _wait_for_budget(connection: Connection, *, max_wait: float) -> None:
    profile = profile_for(connection.broker_slug, connection.environment)
    key = _limit_key(connection)
    paused = pause_left(key)
    if paused:
        if paused > max_wait:
            raise RateLimited(paused, profile.name)
        time.sleep(paused)
    if profile.rate_limit:
        rate_limit_wait(
            key,
            limit=profile.rate_limit.requests,
            per_seconds=profile.rate_limit.per_seconds,
            max_wait=max_wait,
            what=profile.name,
        )


def _log_call(connection: Connection, method: str, response: BrokerResponse | None, error: BrokerError | None,
              *, refreshed: bool) -> None:
    """One log line per call: integration calls are kept apart from the heartbeat's history
    (see the module docstring), so this line and the HTTP API's audit trail are their record."""
    extra = {
        "connection_id": str(connection.pk),
        "broker": connection.broker_slug,
        "method": method,
        "refreshed": refreshed,
    }
    if response is not None:
        extra.update(status=response.status, latency_ms=response.latency_ms)
    if error is not None:
        extra.update(category=error.category)
    (logger.warning if error is not None else logger.info)("connections.api.call", extra=extra)


@sensitive_variables()
def _send(connection: Connection, method: str, url: str, *, headers: dict, **kwargs) -> BrokerResponse:
    profile = profile_for(connection.broker_slug, connection.environment)
    headers = {**headers, "Authorization": f"Bearer {connection_unsealed_token(connection)}"}
    return broker_call(profile, method, url, during="account", passthrough=True, headers=headers, **kwargs)


@sensitive_variables()
def connection_call(
    connection_id,
    method: str,
    path: str,
    *,
    params: dict | list | None = None,
    json=None,
    data: bytes | dict | None = None,
    headers: dict | None = None,
    actor=None,
    max_wait: float = DEFAULT_MAX_WAIT,
    timeout: float | tuple[float, float] | None = None,
) -> BrokerResponse:
    """Call the broker's API as this connection (see the module docstring).

    Raises NeedsReauthentication, ConnectionUnavailable, RateLimited (brokerlink's own limit
    or a pause longer than `max_wait`), BrokerError (network) and ValueError (a path outside
    the API base)."""
    connection = connection_fresh(connection_id, actor=actor)
    url = connection_api_url(connection, path)
    sent_headers = {k: v for k, v in (headers or {}).items() if k.lower() not in DROPPED_HEADERS}
    kwargs = {"params": params, "json": json, "data": data, "timeout": timeout}
    profile = profile_for(connection.broker_slug, connection.environment)
    response: BrokerResponse | None = None
    refreshed = rate_retried = False
    while True:
        _wait_for_budget(connection, max_wait=max_wait)
        try:
            response = _send(connection, method.upper(), url, headers=sent_headers, **kwargs)
        except BrokerError as error:
            _log_call(connection, method.upper(), None, error, refreshed=refreshed)
            raise
        if response.status in profile.token_invalid_statuses and not refreshed:
            refreshed = True
            rejected = connection.access_token_sealed
            try:
                connection_refresh(
                    connection.pk,
                    reason="api_401",
                    actor=actor,
                    force=True,
                    rejected_access_sealed=rejected,
                    wait=REFRESH_WAIT_SECONDS,
                )
            except BrokerError as error:
                _log_call(connection, method.upper(), response, None, refreshed=refreshed)
                if error.needs_reauth:
                    raise _dead_grant(connection, error, actor) from None
                raise ConnectionUnavailable(
                    connection.pk,
                    f"{profile.name} rejected the token and the refresh failed: {error.message}",
                    category=error.category,
                ) from None
            connection.refresh_from_db()
            if connection.access_token_sealed == rejected:  # no new token (in progress or outcome unknown)
                _log_call(connection, method.upper(), response, None, refreshed=refreshed)
                raise ConnectionUnavailable(
                    connection.pk,
                    f"{profile.name} rejected the token and no new one is available yet; try again shortly.",
                    category=errors.AUTH,
                )
            url = connection_api_url(connection, path)  # a refresh can move Questrade's api_server
            logger.info("connections.api.retry_after_refresh", extra={"connection_id": str(connection.pk)})
            continue
        if response.status == 429 and not rate_retried:
            retry_after = (response.error.retry_after if response.error else None) or 1.0
            pause_set(_limit_key(connection), retry_after)
            if retry_after <= max_wait:
                rate_retried = True
                continue  # _wait_for_budget sleeps through the pause
        break
    _log_call(connection, method.upper(), response, None, refreshed=refreshed)
    return response


# --- the manual actions: Check now, Refresh now ---------------------------------------------

# "Refresh now" waits this long for a refresh someone else is running, then reports it running.
MANUAL_REFRESH_WAIT = 20.0


class CheckBusy(Exception):
    """Another worker holds this connection's lease right now."""


class CheckTooSoon(Exception):
    """A person's "Check now" on this connection came within CHECK_NOW_COOLDOWN_SECONDS of the last."""


def check_now_cooldown_open(connection_id, *, cooldown_seconds: int, claim) -> bool:
    """The cooldown's decision: with none configured (0 or less) every press goes through;
    otherwise the first press of the window wins. `claim(key, seconds)` adds the key unless it
    is there (atomic: cache.add) and says whether it did."""
    return cooldown_seconds <= 0 or claim(f"check-now-cooldown:{connection_id}", cooldown_seconds)


def check_now_allowed(connection: Connection) -> bool:
    """One "Check now" per connection per cooldown: each press is a call on the app's shared
    broker quota. Atomic (cache.add); with Redis down the cache's in-process fallback keeps
    the cooldown per process, and the check's lease still keeps presses from overlapping."""
    from django.conf import settings
    from django.core.cache import cache

    cooldown = int(getattr(settings, "CHECK_NOW_COOLDOWN_SECONDS", 10))
    return check_now_cooldown_open(
        connection.pk, cooldown_seconds=cooldown, claim=lambda key, seconds: cache.add(key, 1, timeout=seconds)
    )


def _claim_one(connection: Connection, *, owner: str, now: datetime, lease_seconds: float) -> bool:
    from django.db.models import Q

    return bool(
        EngineState.objects.filter(pk=connection.pk)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=""))
        .update(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
    )


def connection_check_now(connection: Connection, *, actor=None, cooldown: bool = False) -> Outcome:
    """Check one connection right away with the sweep's rules ("Check now").

    Shows "checking" while it runs, then the result. Raises CheckBusy when a worker is
    checking it at this moment, ValueError for a connection that is not active. With
    `cooldown` (a person's press on the pages) a press within CHECK_NOW_COOLDOWN_SECONDS of the
    last raises CheckTooSoon first, before anything else is looked at."""
    import uuid

    if cooldown and not check_now_allowed(connection):
        raise CheckTooSoon(str(connection.pk))
    if connection.status in INACTIVE_STATUSES:
        raise ValueError(f"cannot check a {connection.status} connection")
    now = timezone.now()
    owner = f"manual:{uuid.uuid4().hex[:12]}"
    if not _claim_one(connection, owner=owner, now=now, lease_seconds=engine_setting("LEASE_SECONDS")):
        raise CheckBusy(str(connection.pk))
    connection.refresh_from_db()
    before = connection.status
    connection_transition(
        connection=connection, to_status=ConnectionStatus.CHECKING, actor=actor, message="Check requested."
    )
    try:
        stats = connections_check([connection], now=now, owner=owner)
    except Exception:
        # Never leave the row "checking": put the status back and let the sweep check it.
        logger.exception("connections.check_now.failed", extra={"connection_id": str(connection.pk)})
        EngineState.objects.filter(pk=connection.pk, lease_owner=owner).update(lease_owner="", lease_until=None)
        connection.refresh_from_db()
        if connection.status == ConnectionStatus.CHECKING:
            connection_transition(
                connection=connection,
                to_status=before,
                message="The check could not finish inside brokerlink; the next scheduled check will run it.",
                category=errors.UNEXPECTED,
            )
        raise
    if stats.outcomes:
        return stats.outcomes[0]
    return Outcome(connection=connection)


def connection_refresh_now(connection: Connection, *, actor=None) -> Connection:
    """Refresh the tokens right away ("Refresh now"), single-flight like every refresh. A dead
    grant moves the connection to needs_reauth; other errors are re-raised for the caller to show."""
    try:
        result = connection_refresh(connection.pk, reason="manual", actor=actor, force=True, wait=MANUAL_REFRESH_WAIT)
        if result.reason == IN_PROGRESS:
            raise BrokerError(errors.NETWORK, "A token refresh is already running; its result will appear shortly.")
        if result.reason == OUTCOME_UNKNOWN:
            raise BrokerError(
                errors.NETWORK,
                "The broker did not answer the last refresh; brokerlink will not send the refresh token again "
                "before the broker answers a later request, so it is not spent twice.",
            )
    except BrokerError as error:
        connection.refresh_from_db()
        if error.needs_reauth and connection.status not in INACTIVE_STATUSES:
            connection_transition(
                connection=connection,
                to_status=ConnectionStatus.NEEDS_REAUTH,
                message=error.message,
                category=error.category,
                actor=actor,
            )
        raise
    return result.connection
