"""Business rules of the sandbox broker: clients and their token semantics, faults, grants,
tokens, counters, users. Views, commands and the control API all call these functions."""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.db.models import F
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils import timezone

from brokers.profile import STANDARD_INVALID_GRANT, STANDARD_INVALID_TOKEN, ErrorShape, TokenRules
from sandbox.models import (
    SandboxAccount,
    SandboxClient,
    SandboxGrant,
    SandboxToken,
    SandboxUser,
    TokenAuthMethod,
    secret_hash,
    token_hash,
)

DEMO_USERNAME = "demo"
# A public demo login, printed on the sandbox login page on purpose.
DEMO_PASSWORD = "demo-broker-pass"  # noqa: S105
DEMO_ACCOUNTS = [("Individual", "PA00001234"), ("Margin", "PA00005678")]

FAULT_FIELDS = {
    "latency_ms": int,
    "error_5xx_rate": float,
    "rate_limit": int,
    "outage": bool,
    "refresh_invalid_grant": bool,
    "html_errors": bool,
    "html_status": int,
    "stall_seconds": float,
    "clock_offset_seconds": int,
}
COUNTER_FIELDS = ("codes_issued", "token_requests", "refreshes", "rotated_reuses", "revocations", "account_calls")


class SandboxError(ValueError):
    """A control request the sandbox cannot carry out (bad field, unknown broker)."""


# --- clients -----------------------------------------------------------------------------


def client_create(
    *,
    name: str,
    redirect_uris: list[str],
    rotate_refresh: bool = False,
    emulate: str = "",
    token_endpoint_auth_method: str | None = None,
    token_rules: TokenRules | None = None,
    **fields: Any,
) -> SandboxClient:
    """Create a sandbox OAuth client. `emulate` copies a broker profile's TokenRules;
    explicit arguments (auth method, rotation, other model fields) win over the copy."""
    if not redirect_uris:
        raise SandboxError("at least one redirect URI is required")
    plain_secret = secrets.token_urlsafe(32)
    client = SandboxClient(
        client_id=f"sbx_{secrets.token_hex(8)}",
        client_secret=secret_hash(plain_secret),
        name=name,
        redirect_uris="\n".join(redirect_uris),
        emulate=emulate,
    )
    if emulate and token_rules is None:
        token_rules = broker_token_rules(emulate)
    if token_rules is not None:
        client_apply_token_rules(client, token_rules)
    if rotate_refresh:
        client.rotates_refresh_token = True
        client.issues_refresh_token = True
    if token_endpoint_auth_method:
        client.token_endpoint_auth_method = token_endpoint_auth_method
    allowed = {f.name for f in SandboxClient._meta.get_fields()} - {"id", "client_id", "client_secret", *COUNTER_FIELDS}
    for key, value in fields.items():
        if key not in allowed:
            raise SandboxError(f"unknown client field: {key}")
        setattr(client, key, value)
    if client.token_endpoint_auth_method == TokenAuthMethod.NONE:
        client.client_secret = plain_secret = ""
    client.full_clean()
    client.save()
    client.plain_secret = plain_secret  # returned once, never stored
    return client


def broker_token_rules(slug: str) -> TokenRules:
    from brokers.registry import get_profile

    try:
        return get_profile(slug).token_rules
    except (KeyError, LookupError) as exc:
        raise SandboxError(f"unknown broker: {slug}") from exc


def client_apply_token_rules(client: SandboxClient, rules: TokenRules) -> None:
    """Map every TokenRules field onto the client (not saved)."""
    client.access_ttl = rules.access_ttl
    client.issues_refresh_token = rules.issues_refresh_token
    client.refresh_ttl = rules.refresh_ttl
    client.rotates_refresh_token = rules.rotates_refresh_token
    client.absolute_cap = rules.absolute_cap
    client.daily_expiry = rules.daily_expiry
    client.daily_expiry_tz = rules.daily_expiry_tz
    client.token_endpoint_auth_method = rules.token_auth_method
    client.require_pkce = rules.pkce
    client.invalid_refresh_status = rules.invalid_refresh.status
    client.invalid_refresh_body = rules.invalid_refresh.body
    client.invalid_refresh_content_type = rules.invalid_refresh.content_type
    client.invalid_access_status = rules.invalid_access.status
    client.invalid_access_body = rules.invalid_access.body
    client.invalid_access_content_type = rules.invalid_access.content_type


def client_update(client: SandboxClient, **fields: Any) -> SandboxClient:
    """Change a client's token semantics (access_ttl, rotates_refresh_token, ...) from the control
    API. Applies to tokens issued from now on; identity, secret and counters cannot be changed here."""
    allowed = {f.name for f in SandboxClient._meta.get_fields() if f.concrete} - {
        "id",
        "client_id",
        "client_secret",
        *COUNTER_FIELDS,
        *FAULT_FIELDS,
    }
    for key, value in fields.items():
        if key not in allowed:
            raise SandboxError(f"unknown or read-only client field: {key}")
        setattr(client, key, value)
    client.full_clean()
    client.save()
    return client


def client_describe(client: SandboxClient, *, with_secret: bool = False) -> dict[str, Any]:
    data = {
        "client_id": client.client_id,
        "name": client.name,
        "redirect_uris": client.redirect_uri_list,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "require_pkce": client.require_pkce,
        "emulate": client.emulate,
        "access_ttl": client.access_ttl,
        "issues_refresh_token": client.issues_refresh_token,
        "refresh_ttl": client.refresh_ttl,
        "rotates_refresh_token": client.rotates_refresh_token,
        "refresh_reuse_grace_seconds": client.refresh_reuse_grace_seconds,
        "absolute_cap": client.absolute_cap,
        "daily_expiry": client.daily_expiry.strftime("%H:%M") if client.daily_expiry else None,
        "daily_expiry_tz": client.daily_expiry_tz,
        "oidc": client.oidc,
        "login_session_ttl": client.login_session_ttl,
        "invalid_refresh": error_shape(client, "refresh").__dict__,
        "invalid_access": error_shape(client, "access").__dict__,
    }
    if with_secret:
        # Only right after creation: the database holds a hash.
        data["client_secret"] = getattr(client, "plain_secret", "")
    return data


def client_faults(client: SandboxClient) -> dict[str, Any]:
    return {name: getattr(client, name) for name in FAULT_FIELDS}


def client_set_faults(client: SandboxClient, **faults: Any) -> SandboxClient:
    for name, value in faults.items():
        if name not in FAULT_FIELDS:
            raise SandboxError(f"unknown fault: {name}")
        try:
            value = FAULT_FIELDS[name](value)
        except (TypeError, ValueError) as exc:
            raise SandboxError(f"bad value for {name}: {value!r}") from exc
        if name == "error_5xx_rate" and not 0 <= value <= 1:
            raise SandboxError("error_5xx_rate must be between 0 and 1")
        if name in {"latency_ms", "rate_limit", "stall_seconds"} and value < 0:
            raise SandboxError(f"{name} must not be negative")
        setattr(client, name, value)
    client.save(update_fields=list(faults) or None)
    return client


def client_revoke_all_grants(client: SandboxClient, *, reason: str = "revoke_all") -> int:
    """Every grant of this client dies, as when the user changes their password at the broker."""
    grants = list(client.grants.filter(revoked_at__isnull=True))
    for grant in grants:
        grant_revoke(grant, reason=reason)
    return len(grants)


def client_counters(client: SandboxClient) -> dict[str, Any]:
    counters_flush()
    client.refresh_from_db()
    return {
        **{name: getattr(client, name) for name in COUNTER_FIELDS},
        "grants": [
            {
                "id": grant.pk,
                "account": grant.account.label,
                "consented_at": grant.consented_at.isoformat(),
                "revoked": grant.is_revoked,
                "revoked_reason": grant.revoked_reason,
                **{name: getattr(grant, name) for name in COUNTER_FIELDS},
            }
            for grant in client.grants.select_related("account").order_by("id")
        ],
    }


def count(client: SandboxClient | None, grant: SandboxGrant | None, field: str) -> None:
    if client is not None:
        SandboxClient.objects.filter(pk=client.pk).update(**{field: F(field) + 1})
    if grant is not None:
        SandboxGrant.objects.filter(pk=grant.pk).update(**{field: F(field) + 1})


# Hot-path counters (account calls) are added up in the process and written in batches: one
# UPDATE per row and flush instead of two contended single-row UPDATEs per request. Anything
# that reads counters (client_counters, the control page) flushes first, so reads stay exact.
COUNTER_FLUSH_SECONDS = 0.5
_pending: collections.Counter = collections.Counter()  # (model, pk, field) -> increment
_pending_lock = threading.Lock()
_last_flush = time.monotonic()
_flush_timer: asyncio.TimerHandle | None = None


_flush_lock = threading.Lock()


def count_later(client: SandboxClient | None, grant: SandboxGrant | None, field: str) -> None:
    with _pending_lock:
        if client is not None:
            _pending[(SandboxClient, client.pk, field)] += 1
        if grant is not None:
            _pending[(SandboxGrant, grant.pk, field)] += 1


def counters_flush() -> None:
    """Write the pending counter increments (coalesced: one UPDATE per model, field and step).
    One flush at a time: a reader flushing before it reads must not overtake a timer's flush
    that has taken the increments but not written them yet."""
    with _flush_lock:
        _counters_flush()


def _counters_flush() -> None:
    global _last_flush
    with _pending_lock:
        pending = dict(_pending)
        _pending.clear()
        _last_flush = time.monotonic()
    groups: dict[tuple, list] = collections.defaultdict(list)
    for (model, pk, field), step in pending.items():
        groups[(model, field, step)].append(pk)
    try:
        for (model, field, step), pks in groups.items():
            model.objects.filter(pk__in=pks).update(**{field: F(field) + step})
    except Exception:
        with _pending_lock:  # keep the counts for the next flush rather than lose them
            _pending.update(pending)
        raise


async def acounters_flush_soon() -> None:
    """From an async view: flush now if the last flush is old, else make sure one is scheduled."""
    global _flush_timer
    if time.monotonic() - _last_flush >= COUNTER_FLUSH_SECONDS:
        await _aflush()
        return
    if _flush_timer is None or _flush_timer.cancelled():
        loop = asyncio.get_running_loop()

        def fire():
            global _flush_timer
            _flush_timer = None
            if _pending:
                loop.create_task(_aflush())

        _flush_timer = loop.call_later(COUNTER_FLUSH_SECONDS, fire)


async def _aflush() -> None:
    await sync_to_async(_on_db_thread, thread_sensitive=False, executor=_db_executor)(counters_flush)


def _counters_flush_at_exit() -> None:
    if _pending:
        with contextlib.suppress(Exception):  # the database may be gone already at exit
            counters_flush()


atexit.register(_counters_flush_at_exit)


# --- faults ------------------------------------------------------------------------------


def fault_response(client: SandboxClient) -> HttpResponse | None:
    """Apply this client's faults to one request: sleep for latency and stalls, and return the
    response that replaces the real one, or None to carry on."""
    if client.outage:
        return _outage_response()
    if delay := fault_delay_seconds(client):
        time.sleep(delay)
    return fault_after_delay(client)


async def afault_response(client: SandboxClient) -> HttpResponse | None:
    """fault_response for async views: the same faults, waiting with asyncio.sleep."""
    if client.outage:
        return _outage_response()
    if delay := fault_delay_seconds(client):
        await asyncio.sleep(delay)
    return fault_after_delay(client)


def _outage_response() -> HttpResponse:
    return JsonResponse({"error": "temporarily_unavailable", "error_description": "sandbox outage"}, status=503)


def fault_delay_seconds(client: SandboxClient) -> float:
    """How long a request waits before it is answered: the latency fault plus any stall."""
    return (client.latency_ms / 1000 if client.latency_ms else 0.0) + (client.stall_seconds or 0.0)


def fault_after_delay(client: SandboxClient) -> HttpResponse | None:
    if client.rate_limit:
        response = JsonResponse({"error": "rate_limited", "error_description": "too many requests"}, status=429)
        response["Retry-After"] = str(client.rate_limit)
        return response
    if client.html_errors:
        status = client.html_status or 502
        return HttpResponse(render_to_string("sandbox/bad_gateway.html"), status=status, content_type="text/html")
    if client.error_5xx_rate and random.random() < client.error_5xx_rate:
        return JsonResponse({"error": "server_error", "error_description": "injected failure"}, status=500)
    return None


def error_shape(client: SandboxClient, kind: str) -> ErrorShape:
    if kind == "refresh":
        if not client.invalid_refresh_body:
            return STANDARD_INVALID_GRANT
        return ErrorShape(
            client.invalid_refresh_status, client.invalid_refresh_body, client.invalid_refresh_content_type
        )
    if not client.invalid_access_body:
        return STANDARD_INVALID_TOKEN
    return ErrorShape(client.invalid_access_status, client.invalid_access_body, client.invalid_access_content_type)


def error_shape_response(shape: ErrorShape) -> HttpResponse:
    import json

    body = shape.body if isinstance(shape.body, str) else json.dumps(shape.body)
    response = HttpResponse(body, status=shape.status, content_type=shape.content_type)
    response["Cache-Control"] = "no-store"
    return response


# --- tokens and grants -------------------------------------------------------------------


def next_wall_clock(now: datetime, at: dtime, tz_name: str) -> datetime:
    """The next moment the local clock in `tz_name` shows `at`, strictly after `now`."""
    tz = ZoneInfo(tz_name)
    local = now.astimezone(tz)
    candidate = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = (local + timedelta(days=1)).replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    return candidate


def access_expires_in(client: SandboxClient, now: datetime) -> int | None:
    """Seconds an access token issued now lives: the TTL, cut short by a daily wall-clock expiry."""
    candidates = []
    if client.access_ttl:
        candidates.append(client.access_ttl)
    if client.daily_expiry is not None:
        boundary = next_wall_clock(now, client.daily_expiry, client.daily_expiry_tz)
        candidates.append(int((boundary - now).total_seconds()))
    return min(candidates) if candidates else None


def token_store(*, token: dict, client: SandboxClient, grant: SandboxGrant, grant_type: str) -> SandboxToken:
    now = client.now()
    expires_in = token.get("expires_in")
    refresh = token.get("refresh_token")
    item = SandboxToken.objects.create(
        client=client,
        grant=grant,
        access_token_hash=token_hash(token["access_token"]),
        refresh_token_hash=token_hash(refresh) if refresh else None,
        scope=token.get("scope", ""),
        issued_at=now,
        access_expires_at=now + timedelta(seconds=expires_in) if expires_in else None,
        refresh_expires_at=now + timedelta(seconds=client.refresh_ttl) if refresh and client.refresh_ttl else None,
    )
    if grant_type == "refresh_token":
        count(client, grant, "refreshes")
    count(None, grant, "token_requests")
    return item


def _in_reuse_grace(item: SandboxToken, client: SandboxClient, now: datetime) -> bool:
    grace = client.refresh_reuse_grace_seconds
    return bool(grace and item.rotated_at and now - item.rotated_at <= timedelta(seconds=grace))


def refresh_token_check(*, refresh_token: str, client: SandboxClient) -> SandboxToken | None:
    """The live token row for a refresh token, or None (the caller answers invalid_grant).
    Presenting a refresh token that was already rotated away revokes the whole grant."""
    item = (
        SandboxToken.objects.select_related("grant", "client")
        .filter(refresh_token_hash=token_hash(refresh_token), client=client)
        .first()
    )
    if item is None or client.refresh_invalid_grant:
        return None
    now = client.now()
    if item.rotated and not _in_reuse_grace(item, client, now):
        count(client, item.grant, "rotated_reuses")
        grant_revoke(item.grant, reason="rotated_reuse")
        return None
    if item.refresh_revoked or item.grant.is_revoked or item.grant.cap_reached(now):
        return None
    if item.grant.session_expires_at is not None and now >= item.grant.session_expires_at:
        return None  # OIDC mode without offline_access: the login session is over
    if item.refresh_expires_at is not None and now >= item.refresh_expires_at:
        return None
    return item


OFFLINE_ACCESS = "offline_access"


def oidc_granted_scope(client: SandboxClient, requested: str, *, prompt: str, now: datetime) -> tuple[str, Any]:
    """(granted scope, when the grant's login session ends) for one consent.

    OpenID Connect Core 1.0 §11: offline_access is ignored unless the request carries
    prompt=consent. Without it an OIDC-mode grant lives only as long as the login session
    (client.login_session_ttl), refresh tokens included. Other clients get what they asked for.
    """
    if not client.oidc:
        return requested, None
    scopes = requested.split()
    if OFFLINE_ACCESS in scopes and "consent" not in prompt.split():
        scopes = [s for s in scopes if s != OFFLINE_ACCESS]
    session_end = None if OFFLINE_ACCESS in scopes else now + timedelta(seconds=client.login_session_ttl)
    return " ".join(scopes), session_end


def userinfo_payload(token: SandboxToken) -> dict[str, Any]:
    """OIDC userinfo: the subject only, as a minimal provider answers (no account fields)."""
    return {"sub": f"sbx-user-{token.grant.user_id}"}


def grant_revoke(grant: SandboxGrant, *, reason: str) -> None:
    token_cache_clear()
    with transaction.atomic():
        SandboxGrant.objects.filter(pk=grant.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_reason=reason
        )
        grant.tokens.update(access_revoked=True, refresh_revoked=True)
    token_cache_clear()
    grant.refresh_from_db()


def token_revoke(token: SandboxToken, *, refresh: bool) -> None:
    """RFC 7009: revoking a refresh token ends the grant; an access token only itself."""
    count(None, token.grant, "revocations")
    token_cache_clear()
    if refresh:
        grant_revoke(token.grant, reason="revoked_by_client")
    else:
        SandboxToken.objects.filter(pk=token.pk).update(access_revoked=True)
        token_cache_clear()


def token_for_access(access_token: str) -> SandboxToken | None:
    return (
        SandboxToken.objects.select_related("client", "grant__account")
        .filter(access_token_hash=token_hash(access_token))
        .first()
    )


# The account endpoint's token lookup (token + client + grant + account in one query) is kept
# for TOKEN_CACHE_SECONDS. Every change this process makes to a client, grant or token (faults,
# revocations, rotations, via the control API or OAuth endpoints) clears the cache at once; a
# change made by another process is seen within TOKEN_CACHE_SECONDS.
_token_cache: dict[str, tuple[float, SandboxToken]] = {}
_token_cache_generation = 0
# Entries live TOKEN_CACHE_SECONDS (1 s): a few thousand at a time even at 5,000 requests/s.
# Expired ones are dropped when the cache is full, so it never holds a whole cycle's tokens
# (100,000 cached token rows made every garbage collection of the sandbox slower).
TOKEN_CACHE_MAX = 20_000


def token_cache_seconds() -> float:
    """settings.SANDBOX_TOKEN_CACHE_SECONDS, else the environment variable, else 1 s; 0 turns it off."""
    import os

    from django.conf import settings

    value = getattr(settings, "SANDBOX_TOKEN_CACHE_SECONDS", None)
    return float(value if value is not None else os.environ.get("SANDBOX_TOKEN_CACHE_SECONDS") or 1.0)


def token_cache_clear(**kwargs: Any) -> None:
    global _token_cache_generation
    _token_cache_generation += 1
    _token_cache.clear()


# The account endpoint's database work runs on these few threads, each with one persistent
# connection. (Django's ASGI handler gives each request its own thread for thread-sensitive
# code: 200 concurrent heartbeats would open 200 PostgreSQL connections.)
_db_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-db")


def _on_db_thread(fn, *args):
    from django.db import InterfaceError, OperationalError, connection

    try:
        return fn(*args)
    except (OperationalError, InterfaceError):
        connection.close()  # a dropped connection: reconnect once
        return fn(*args)


def _tokens_load(digests: list[str]) -> dict[str, SandboxToken]:
    rows = SandboxToken.objects.select_related("client", "grant__account").filter(access_token_hash__in=digests)
    return {row.access_token_hash: row for row in _on_db_thread(lambda: list(rows.all()))}


# Lookups that arrive within LOOKUP_WINDOW of the first are answered by one query
# (`access_token_hash IN (...)`): under load one query serves dozens of heartbeats. A query
# has a fixed cost (the ORM's compile, a round trip), so answering only what arrived in the
# same loop pass made the sweep's spread-out heartbeats cost the sandbox far more CPU each
# than with this 2 ms window (docs/benchmarks.md#figures-the-code-cites).
_lookups: dict[str, list[asyncio.Future]] = {}
LOOKUP_WINDOW = 0.002


async def _token_load_batched(digest: str) -> SandboxToken | None:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    first = not _lookups
    _lookups.setdefault(digest, []).append(future)
    if first:
        loop.call_later(LOOKUP_WINDOW, lambda: loop.create_task(_lookups_run()))
    return await future


async def _lookups_run() -> None:
    batch = dict(_lookups)
    _lookups.clear()
    try:
        rows = await sync_to_async(_tokens_load, thread_sensitive=False, executor=_db_executor)(list(batch))
    except Exception as exc:  # noqa: BLE001 - handed to every waiting request
        for futures in batch.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
        return
    for digest, futures in batch.items():
        for future in futures:
            if not future.done():
                future.set_result(rows.get(digest))


async def atoken_for_access(access_token: str) -> SandboxToken | None:
    digest = token_hash(access_token)
    now = time.monotonic()
    hit = _token_cache.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    generation = _token_cache_generation
    item = await _token_load_batched(digest)
    ttl = token_cache_seconds()
    if item is not None and ttl > 0 and generation == _token_cache_generation:
        if len(_token_cache) >= TOKEN_CACHE_MAX:
            for key in [key for key, (until, _) in _token_cache.items() if until <= now]:
                del _token_cache[key]
            if len(_token_cache) >= TOKEN_CACHE_MAX:
                _token_cache.clear()
        _token_cache[digest] = (now + ttl, item)
    return item


def account_payload(account: SandboxAccount) -> dict[str, Any]:
    return {
        "id": f"sbx-acct-{account.pk}",
        "account_number": account.account_number,
        "masked_number": account.masked_number,
        "label": account.label,
        "status": account.status,
        "paper": account.paper,
    }


# --- users -------------------------------------------------------------------------------


def user_create(
    *, username: str, password: str, display_name: str = "", accounts: list[tuple[str, str]] | None = None
) -> SandboxUser:
    with transaction.atomic():
        user = SandboxUser.objects.create(
            username=username, password=make_password(password), display_name=display_name or username
        )
        for kind, number in accounts or []:
            SandboxAccount.objects.create(user=user, kind=kind, account_number=number)
    return user


def user_authenticate(*, username: str, password: str) -> SandboxUser | None:
    user = SandboxUser.objects.filter(username=username).first()
    if user is None or not check_password(password, user.password):
        return None
    return user


def sandbox_demo_user_ensure() -> SandboxUser:
    """The demo login shown on the sandbox login page, with two paper accounts. Safe to run twice."""
    user = SandboxUser.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = user_create(
            username=DEMO_USERNAME, password=DEMO_PASSWORD, display_name="Demo Trader", accounts=DEMO_ACCOUNTS
        )
    return user


def random_account_number() -> str:
    return f"PA{secrets.randbelow(10**8):08d}"


def client_from_token_request(request) -> SandboxClient | None:
    """The client a token or revocation request names (Basic header or form body), for faults
    and counters. Authentication itself is authlib's job."""
    import base64
    from urllib.parse import unquote

    client_id = ""
    auth = request.headers.get("Authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            client_id = unquote(base64.b64decode(auth[6:].strip()).decode().split(":", 1)[0])
        except (ValueError, UnicodeDecodeError):
            client_id = ""
    client_id = client_id or request.POST.get("client_id", "")
    return SandboxClient.objects.filter(client_id=client_id).first() if client_id else None


def client_fields_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """Turn control-API JSON into client_create keyword arguments."""
    data = dict(data)
    uris = data.pop("redirect_uris", None) or data.pop("redirect_uri", None) or []
    fields: dict[str, Any] = {"redirect_uris": [uris] if isinstance(uris, str) else list(uris)}
    for key in ("name", "rotate_refresh", "emulate", "token_endpoint_auth_method"):
        if key in data:
            fields[key] = data.pop(key)
    fields.setdefault("name", "Sandbox client")
    if data.get("daily_expiry"):
        hour, minute = str(data["daily_expiry"]).split(":")[:2]
        data["daily_expiry"] = dtime(int(hour), int(minute))
    for kind in ("invalid_refresh", "invalid_access"):
        shape = data.pop(kind, None)
        if shape:
            data[f"{kind}_status"] = shape.get("status", 400)
            data[f"{kind}_body"] = shape.get("body")
            data[f"{kind}_content_type"] = shape.get("content_type", "application/json")
    faults = {key: data.pop(key) for key in list(data) if key in FAULT_FIELDS}
    fields.update(data)
    fields["_faults"] = faults
    return fields


def client_create_from_json(data: dict[str, Any]) -> SandboxClient:
    fields = client_fields_from_json(data)
    faults = fields.pop("_faults")
    client = client_create(**fields)
    if faults:
        client_set_faults(client, **faults)
    return client
