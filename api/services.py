"""Service keys (create, authenticate, revoke) and the API audit trail.

A key reaches no further than its creator may grant (issue 24):
- its users, listed; none listed covers NO connection. Every user's connections is the
  explicit `all_users`, which only a superuser or a holder of `api.grant_wide_keys` may set;
- `tokens:read` and `broker:call` need that same permission, and an expiry;
- creating a key, or widening one (a scope, users, every user, a later or no expiry), is
  written to the audit trail and mailed to the operators (ADMINS);
- a key stops working when its creator is deactivated.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.cache import cache
from django.core.mail import mail_admins
from django.db.models import QuerySet
from django.utils import timezone

from api.models import ApiAuditEntry, Scope, ServiceKey
from common.tunables import tunable
from connections.models import Connection
from partners.services import app_connections, end_user_id_valid

logger = logging.getLogger(__name__)

KEY_PREFIX = "blk_"
LAST_USED_PRECISION = timedelta(minutes=1)


# Scopes that hand out a person's broker access: granted only with the permission, and never forever.
POWERFUL_SCOPES = frozenset({Scope.READ_TOKENS.value, Scope.CALL.value})
WIDE_PERMISSION = "api.grant_wide_keys"


class KeyGrantRefused(ValueError):
    """The key asked for more than its creator may grant; the message says what and why."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def may_grant_wide_keys(actor) -> bool:
    return bool(actor is not None and actor.is_active and (actor.is_superuser or actor.has_perm(WIDE_PERMISSION)))


def service_key_grant_problems(*, actor, scopes, all_users: bool, expires_at: datetime | None) -> list[str]:
    """Why `actor` may not give a key this reach ([] = allowed). `actor` None is brokerlink's
    own code (a management command), which is trusted with the permission but not with keys
    that never expire."""
    problems = []
    powerful = sorted(set(scopes) & POWERFUL_SCOPES)
    if (all_users or powerful) and actor is not None and not may_grant_wide_keys(actor):
        what = ["every user's connections"] if all_users else []
        what += [f"the {scope} scope" for scope in powerful]
        problems.append(
            f"Only a superuser (or staff with “grant wide keys”) may give a key {' and '.join(what)}."
        )
    if powerful and expires_at is None:
        problems.append(f"A key with {' or '.join(powerful)} needs an expiry date.")
    return problems


def _reach(key: ServiceKey) -> dict:
    return {
        "scopes": set(key.scopes or []),
        "brokers": set(key.broker_slugs or []),
        "all_users": bool(key.all_users),
        "users": set(key.users.values_list("pk", flat=True)) if key.pk else set(),
        "expires_at": key.expires_at,
    }


def reach_widened(before: dict, after: dict) -> list[str]:
    """What `after` reaches that `before` did not (pure)."""
    widened = []
    if after["scopes"] - before["scopes"]:
        widened.append("scopes " + ", ".join(sorted(after["scopes"] - before["scopes"])))
    if before["brokers"] and (not after["brokers"] or after["brokers"] - before["brokers"]):
        widened.append("brokers")
    if after["all_users"] and not before["all_users"]:
        widened.append("every user")
    if after["users"] - before["users"]:
        widened.append(f"{len(after['users'] - before['users'])} more user(s)")
    if before["expires_at"] is not None and (after["expires_at"] is None or after["expires_at"] > before["expires_at"]):
        widened.append("a later expiry" if after["expires_at"] else "no expiry")
    return widened


def service_key_reach(key: ServiceKey) -> dict:
    """The key's reach now, to compare after a change (`service_key_changed`)."""
    return _reach(key)


def _announce(key: ServiceKey, *, event: str, detail: str, actor=None, remote_addr: str | None = None) -> None:
    """Audit row, log line and operators' mail for a key that now reaches further."""
    who = getattr(actor, "email", "") or "brokerlink"
    summary = (f"{who}: {detail}; scopes {', '.join(sorted(key.scopes))}; "
               f"{'every user' if key.all_users else str(key.users.count()) + ' user(s)'}; "
               f"expires {key.expires_at.isoformat() if key.expires_at else 'never'}")
    api_audit_record(key=key, action=event, status_code=201 if event == "key_created" else 200, result=summary,
                     remote_addr=remote_addr)
    logger.warning(f"api.{event.replace('_', '.')}", extra={"key_id": str(key.pk), "prefix": key.prefix})
    try:
        mail_admins(f"Service key {key.name} (blk_{key.prefix}_…): {detail}", summary + "\n", fail_silently=False)
    except Exception:  # noqa: BLE001 - the audit row and the log line stand either way
        logger.exception("api.key.alert_mail_failed", extra={"key_id": str(key.pk)})


def service_key_changed(key: ServiceKey, *, before: dict | None, actor=None, remote_addr: str | None = None) -> None:
    """After a key was saved (its users too): audit and alert a creation or a widening."""
    if before is None:
        _announce(key, event="key_created", detail="created", actor=actor, remote_addr=remote_addr)
        return
    widened = reach_widened(before, _reach(key))
    if widened:
        _announce(key, event="key_widened", detail="widened: " + "; ".join(widened), actor=actor,
                  remote_addr=remote_addr)


def service_key_create(
    *,
    name: str,
    scopes: list[str],
    broker_slugs: list[str] | None = None,
    users=(),
    expires_at: datetime | None = None,
    rate_limit_per_minute: int = 120,
    created_by=None,
    app=None,
    all_users: bool = False,
) -> tuple[ServiceKey, str]:
    """A new key and its plaintext ("blk_<prefix>_<secret>"), which is never stored.
    KeyGrantRefused when `created_by` may not grant this reach (see the module docstring)."""
    problems = service_key_grant_problems(actor=created_by, scopes=scopes, all_users=all_users, expires_at=expires_at)
    if problems:
        raise KeyGrantRefused(" ".join(problems))
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ServiceKey.objects.create(
        name=name,
        prefix=prefix,
        key_hash=_hash(secret),
        scopes=list(scopes),
        broker_slugs=list(broker_slugs or []),
        expires_at=expires_at,
        rate_limit_per_minute=rate_limit_per_minute,
        created_by=created_by,
        app=app,
        all_users=all_users,
    )
    if users:
        key.users.set(users)
    service_key_changed(key, before=None, actor=created_by)
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def service_key_set_secret(key: ServiceKey) -> str:
    """Give an existing row (an admin form's) a fresh secret; returns the plaintext."""
    key.prefix = key.prefix or secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key.key_hash = _hash(secret)
    return f"{KEY_PREFIX}{key.prefix}_{secret}"


@dataclass(frozen=True)
class KeyCheck:
    """What a presented key turned out to be: the key when it works, else why not."""

    key: ServiceKey | None
    reason: str = ""  # "", "malformed", "unknown", "wrong_secret", "revoked", "expired", "creator_inactive"
    prefix: str = ""  # the public part, safe to log; never the secret
    found: ServiceKey | None = None  # the row the prefix named, even when refused


def service_key_check(raw: str, *, now: datetime | None = None) -> KeyCheck:
    if not raw or not raw.startswith(KEY_PREFIX):
        return KeyCheck(None, "malformed")
    prefix, _, secret = raw[len(KEY_PREFIX) :].partition("_")
    prefix = prefix[:16]
    if not prefix or not secret:
        return KeyCheck(None, "malformed", prefix)
    key = ServiceKey.objects.filter(prefix=prefix).select_related("created_by").first()
    if key is None:
        return KeyCheck(None, "unknown", prefix)
    if not hmac.compare_digest(key.key_hash, _hash(secret)):
        return KeyCheck(None, "wrong_secret", prefix, key)
    now = now or timezone.now()
    if key.revoked_at is not None:
        return KeyCheck(None, "revoked", prefix, key)
    if not key.is_active(now):
        return KeyCheck(None, "expired", prefix, key)
    if key.created_by_id is not None and not key.created_by.is_active:
        return KeyCheck(None, "creator_inactive", prefix, key)  # a key never outlives its creator's access
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_PRECISION:
        # A minute's precision is enough to see a key in use; not one write per request.
        ServiceKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return KeyCheck(key, "", prefix, key)


def service_key_authenticate(raw: str, *, now: datetime | None = None) -> ServiceKey | None:
    """The active key this plaintext belongs to, or None (unknown, wrong, revoked, expired,
    or its creator deactivated)."""
    return service_key_check(raw, now=now).key


def revoked_key_used(check: KeyCheck, *, remote_addr: str | None) -> None:
    """Someone holds a revoked key's full secret: log it and mail the operators (once an hour per key)."""
    key = check.found
    logger.error("api.key.revoked_used", extra={"key_id": str(key.pk), "prefix": check.prefix,
                                                 "remote_addr": remote_addr or ""})
    if not cache.add(f"api:revoked-used-alert:{key.pk}", 1, timeout=3600):
        return
    try:
        mail_admins(f"Revoked service key {key.name} (blk_{key.prefix}_…) was used",
                    f"A request from {remote_addr or 'an unknown address'} presented the revoked key "
                    f"{key.name} (blk_{key.prefix}_…) with its correct secret. The key was refused; whoever "
                    "holds it still has the secret. Further uses within the hour are in the API audit trail.\n")
    except Exception:  # noqa: BLE001 - the log line and the audit row stand either way
        logger.exception("api.key.alert_mail_failed", extra={"key_id": str(key.pk)})


def service_key_revoke(key: ServiceKey) -> bool:
    changed = ServiceKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if changed:
        logger.info("api.key.revoked", extra={"key_id": str(key.pk)})
    return bool(changed)


def service_key_connections(key: ServiceKey) -> QuerySet[Connection]:
    """The connections this key may see. A partner app's key sees exactly its app's end users'
    connections (limited to its brokers, if listed); no other key sees those. Any other key: its
    brokers (none listed: every broker) and its users (none listed: nobody, unless the key was
    explicitly given every user)."""
    if key.app_id is not None:
        qs = app_connections(key.app_id)
        return qs.filter(broker_slug__in=key.broker_slugs) if key.broker_slugs else qs
    qs = Connection.objects.select_related("user", "engine_state").filter(user__isnull=False)
    if key.broker_slugs:
        qs = qs.filter(broker_slug__in=key.broker_slugs)
    if not key.all_users:
        qs = qs.filter(user_id__in=key.users.values_list("pk", flat=True))
    return qs


def service_key_connection_get(key: ServiceKey, connection_id) -> Connection | None:
    """The connection with this id if this key may see it (service_key_connections); None both
    when it does not exist and when it is out of the key's reach, so callers cannot tell them apart."""
    return service_key_connections(key).filter(pk=connection_id).first()


def service_key_connections_filtered(
    key: ServiceKey,
    *,
    broker: str | None = None,
    status: str | None = None,
    environment: str | None = None,
    user_email: str | None = None,
    end_user_id: str | None = None,
    quality: str | None = None,
) -> QuerySet[Connection]:
    """The connections this key may see (service_key_connections), newest first, narrowed by the
    list endpoint's filters; an empty filter narrows nothing."""
    qs = service_key_connections(key).order_by("-created_at")
    if broker:
        qs = qs.filter(broker_slug=broker)
    if status:
        qs = qs.filter(status=status)
    if environment:
        qs = qs.filter(environment=environment)
    if user_email:
        qs = qs.filter(user__email__iexact=user_email)
    if quality:
        qs = qs.filter(engine_state__quality=quality)
    if end_user_id:
        # An id no end user can have (control characters) matches none.
        qs = qs.filter(end_user__external_id=end_user_id) if end_user_id_valid(end_user_id) else qs.none()
    return qs


def api_audit_record(
    *,
    key: ServiceKey | None,
    action: str,
    status_code: int,
    connection_id=None,
    method: str = "",
    path: str = "",
    result: str = "",
    remote_addr: str | None = None,
) -> ApiAuditEntry:
    # A caller's path or input can carry NUL, which PostgreSQL cannot store: the audit row of a
    # refused request must still be written (a 404, not a 500).
    return ApiAuditEntry.objects.create(
        key=key,
        key_name=key.name if key else "",
        action=action,
        connection_id=connection_id,
        method=method[:8],
        path=path.replace("\x00", "\ufffd")[:500],
        status_code=status_code,
        result=result.replace("\x00", "\ufffd")[:300],
        remote_addr=remote_addr or None,
    )


def api_audit_prune(*, now: datetime | None = None) -> int:
    """Delete audit entries older than API_AUDIT_RETENTION_DAYS (setting, then
    BROKERLINK_API_AUDIT_RETENTION_DAYS, default 90). Returns how many went."""
    days = tunable("API", "AUDIT_RETENTION_DAYS", {"AUDIT_RETENTION_DAYS": 90})
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted, _ = ApiAuditEntry.objects.filter(created_at__lt=cutoff).delete()
    return deleted


SESSION_AUDIT_ACTIONS = {"opened": "session_open", "completed": "session_done", "failed": "session_fail"}


def on_connect_session_event(sender, *, session, action: str, result: str = "", connection_id=None, **kwargs) -> None:
    """partners.signals.connect_session_event: what a browser did with a session, in the audit
    trail of the key that created it (creation itself is audited by the API view)."""
    name = SESSION_AUDIT_ACTIONS.get(action)
    if name is None:
        return
    key = ServiceKey.objects.filter(pk=session.key_id).first() if session.key_id else None
    api_audit_record(
        key=key,
        action=name,
        status_code=200 if action != "failed" else 400,
        connection_id=connection_id,
        method="",
        path=f"connect-session {session.pk}",
        result=result,
    )
