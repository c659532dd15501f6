"""Service keys (create, authenticate, revoke) and the API audit trail."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from api.models import ApiAuditEntry, ServiceKey
from config.env import tunable
from connections.models import Connection
from partners.services import app_connections

logger = logging.getLogger(__name__)

KEY_PREFIX = "blk_"
LAST_USED_PRECISION = timedelta(minutes=1)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


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
) -> tuple[ServiceKey, str]:
    """A new key and its plaintext ("blk_<prefix>_<secret>"), which is never stored."""
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
    )
    if users:
        key.users.set(users)
    logger.info("api.key.created", extra={"key_id": str(key.pk), "scopes": key.scopes})
    return key, f"{KEY_PREFIX}{prefix}_{secret}"


def service_key_set_secret(key: ServiceKey) -> str:
    """Give an existing row (an admin form's) a fresh secret; returns the plaintext."""
    key.prefix = key.prefix or secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key.key_hash = _hash(secret)
    return f"{KEY_PREFIX}{key.prefix}_{secret}"


def service_key_authenticate(raw: str, *, now: datetime | None = None) -> ServiceKey | None:
    """The active key this plaintext belongs to, or None (unknown, wrong, revoked, expired)."""
    if not raw or not raw.startswith(KEY_PREFIX):
        return None
    prefix, _, secret = raw[len(KEY_PREFIX) :].partition("_")
    if not prefix or not secret:
        return None
    key = ServiceKey.objects.filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.key_hash, _hash(secret)):
        return None
    now = now or timezone.now()
    if not key.is_active(now):
        return None
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_PRECISION:
        # A minute's precision is enough to see a key in use; not one write per request.
        ServiceKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


def service_key_revoke(key: ServiceKey) -> bool:
    changed = ServiceKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if changed:
        logger.info("api.key.revoked", extra={"key_id": str(key.pk)})
    return bool(changed)


def service_key_connections(key: ServiceKey) -> QuerySet[Connection]:
    """The connections this key may see: limited to its brokers and users, if it has any.
    A partner app's key sees exactly its app's end users' connections; no other key sees those."""
    if key.app_id is not None:
        qs = app_connections(key.app_id)
        return qs.filter(broker_slug__in=key.broker_slugs) if key.broker_slugs else qs
    qs = Connection.objects.select_related("user").filter(user__isnull=False)
    if key.broker_slugs:
        qs = qs.filter(broker_slug__in=key.broker_slugs)
    user_ids = list(key.users.values_list("pk", flat=True))
    if user_ids:
        qs = qs.filter(user_id__in=user_ids)
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
