"""Sandbox OAuth clients: creation (also from control-API JSON), token semantics, faults,
counters, and which client a token request names."""

from __future__ import annotations

import secrets
from datetime import time as dtime
from typing import Any

from brokers.profile import TokenRules
from sandbox.models import SandboxClient, TokenAuthMethod, secret_hash
from sandbox.services.counters import counters_flush
from sandbox.services.faults import error_shape
from sandbox.services.tokens import grant_revoke

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


def client_get(client_id: str) -> SandboxClient | None:
    """The client with this client_id (the control page's and the control API's), or None."""
    return SandboxClient.objects.filter(client_id=client_id).first()


def clients_newest_first():
    """Every client, newest first (the control page's list)."""
    return SandboxClient.objects.order_by("-created_at")


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
