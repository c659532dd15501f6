"""Outgoing webhooks to the Standard Webhooks spec (https://www.standardwebhooks.com/).

Each event is POSTed as JSON to every enabled endpoint that wants it, with the headers

    webhook-id:         the event's id (the same on every retry: receivers de-duplicate on it)
    webhook-timestamp:  unix seconds of this attempt
    webhook-signature:  "v1,<base64 HMAC-SHA256(key, '<id>.<timestamp>.<body>')>", space-separated,
                        one per active secret (two during a secret rotation)

where the key is the base64 part of the endpoint's `whsec_...` secret. Receivers verify with
the spec's libraries (`standardwebhooks` on PyPI: `Webhook(secret).verify(body, headers)`).
The event catalogue and payloads are in EVENTS below and in docs/webhooks.md. Never a token.

Where events come from: the connection history's outbox (`connections.outbox`). ops connects
to its `event_committed` and `notification_committed` signals (OpsConfig.ready), so it hears
every ConnectionEvent and the engine's expiry Notification once, after the transaction that
wrote them committed. connections never imports ops.

Delivery: a Celery task per attempt (`ops.tasks.webhook_deliver`), due times in the row, a
beat task for due attempts whose message was lost. Failed attempts are retried on
RETRY_SCHEDULE (about 27.5 hours in all, each wait jittered by +/-20 %, the whole schedule
scaled by WEBHOOK_SCHEDULE_SCALE for tests). A delivery that exhausts the schedule gives up;
if its endpoint has not accepted anything since that delivery's first attempt, it has been
failing for more than a day: the endpoint is disabled and its owner is told by email.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta

import requests
from django.conf import settings
from django.core.mail import mail_admins, send_mail
from django.utils import timezone
from standardwebhooks import Webhook

from common.tunables import tunable
from ops.models import WebhookDelivery, WebhookEndpoint
from outbound.clients import outbound_session, refused_by_policy
from outbound.policy import OutboundRefused

logger = logging.getLogger(__name__)

PAYLOAD_VERSION = 1
# Event type -> what it means (the catalogue; docs/webhooks.md shows each payload).
EVENTS = {
    "connection.connected": "A user connected a brokerage account.",
    "connection.reconnected": "A user re-authorized an existing connection (after it needed it, or by choice).",
    "connection.broken": "A working connection stopped working: degraded, broker outage, needs re-authentication "
    "or failed. `data.needs_reauth` says whether the user must act.",
    "connection.fixed": "A broken connection works again.",
    "connection.expiring": "The grant reaches its hard re-authentication deadline soon (`data.deadline`).",
    "connection.revoked": "The connection was disconnected in brokerlink (it can no longer use the tokens) and "
    "the broker was asked to revoke them: `data.revoked_at_broker` says whether the broker confirmed.",
    "connection.revocation_confirmed": "A later \"Try revoking again\" got the broker's confirmation "
    "(`data.revoked_at_broker` is true).",
    "connection.refresh_failed": "A token refresh failed (`data.reason`); `data.needs_reauth` when the grant is dead.",
}
EVENT_TYPES = list(EVENTS)
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret
# Seconds to wait before each retry (Svix's published schedule): attempt 1 is immediate.
RETRY_SCHEDULE = [5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600]
JITTER = 0.2

DEFAULTS: dict[str, float] = {
    # Multiplies every wait of RETRY_SCHEDULE (tests compress a day into seconds).
    "SCHEDULE_SCALE": 1.0,
    # Per-request timeout; receivers should answer fast and work asynchronously.
    "TIMEOUT_SECONDS": 10,
    # A claimed delivery is not re-claimed for this long (a worker died mid-send).
    "CLAIM_SECONDS": 60,
    # After a rotation the previous secret keeps signing for this many hours.
    "ROTATION_HOURS": 24,
}


def webhook_setting(name: str) -> float:
    return float(tunable("WEBHOOK", name, DEFAULTS))


# --- secrets and signing -------------------------------------------------------------------


def webhook_secret_new() -> str:
    """A new endpoint secret in the spec's format: whsec_ + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature, made by the spec's own library (the one receivers verify with)."""
    # A secret set before the spec format (no whsec_ prefix): its bytes are the key.
    key = secret if secret.startswith(SECRET_PREFIX) else secret.encode()
    return Webhook(key).sign(msg_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())


def endpoint_secrets(endpoint: WebhookEndpoint, *, now: datetime | None = None) -> list[str]:
    """The secrets that sign now: the current one, and the previous one until it expires."""
    now = now or timezone.now()
    active = [endpoint.secret] if endpoint.secret_sealed else []
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_sealed and expires and expires > now:
        active.append(endpoint.previous_secret)
    return active


def webhook_headers(endpoint: WebhookEndpoint, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signatures = " ".join(webhook_sign(s, msg_id, timestamp, body) for s in endpoint_secrets(endpoint))
    return {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signatures}


def webhook_endpoint_rotate_secret(endpoint: WebhookEndpoint, *, now: datetime | None = None) -> str:
    """Give the endpoint a new secret; the old one keeps signing for ROTATION_HOURS. Returns
    the new secret (shown once to the admin)."""
    now = now or timezone.now()
    new = webhook_secret_new()
    if endpoint.secret_sealed:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + timedelta(hours=webhook_setting("ROTATION_HOURS"))
    endpoint.secret = new
    endpoint.save()
    logger.info("ops.webhooks.secret_rotated", extra={"endpoint_id": str(endpoint.pk)})
    return new


# --- events --------------------------------------------------------------------------------


def _bad_statuses() -> set[str]:
    from connections.models import ConnectionStatus as S

    return {S.DEGRADED, S.BROKER_OUTAGE, S.NEEDS_REAUTH, S.FAILED}


def _status_before_check(connection_id, from_status: str, created_at) -> str:
    """A manual check passes through "checking": look through it to the status before."""
    from connections.models import ConnectionEvent, ConnectionStatus

    if from_status != ConnectionStatus.CHECKING:
        return from_status
    before = (
        ConnectionEvent.objects.filter(
            connection_id=connection_id, to_status=ConnectionStatus.CHECKING, created_at__lte=created_at
        )
        .order_by("-created_at", "-id")
        .values_list("from_status", flat=True)
        .first()
    )
    return before or from_status


def event_type_for(*, kind: str, from_status: str, to_status: str) -> str | None:
    """The webhook event a connection history entry stands for, if any."""
    from connections.models import ConnectionEvent, ConnectionStatus

    bad = _bad_statuses()
    if kind == ConnectionEvent.Kind.CONNECTED:
        return "connection.connected"
    if kind == ConnectionEvent.Kind.RECONNECTED:
        return "connection.reconnected"
    if kind == ConnectionEvent.Kind.REFRESH_FAILED:
        return "connection.refresh_failed"
    if kind in (ConnectionEvent.Kind.REVOKED, ConnectionEvent.Kind.REVOCATION_FAILED):
        return "connection.revoked"  # see _revocation_event: a retry's outcome is told differently
    if kind == ConnectionEvent.Kind.DISCONNECTED or to_status == ConnectionStatus.DISCONNECTED:
        return None  # told once the broker answered the revocation (connection.revoked)
    if not to_status or to_status == from_status:
        return None
    if to_status in bad and (from_status not in bad or to_status in (ConnectionStatus.NEEDS_REAUTH,
                                                                      ConnectionStatus.FAILED)):
        return "connection.broken"
    if to_status == ConnectionStatus.CONNECTED and from_status in bad:
        return "connection.fixed"
    return None


def _connection_data(connection) -> dict:
    return {
        "id": str(connection.pk),
        "broker": connection.broker_slug,
        "environment": connection.environment,
        "account": connection.account_number_masked,
        "status": connection.status,
        "user_email": getattr(connection.user, "email", "") if connection.user_id else "",
        # The partner app's own id of the end user who owns the connection (null: a brokerlink user's).
        "end_user_id": connection.end_user.external_id if connection.end_user_id else None,
    }


def _app_of(connection):
    """The partner app whose endpoints hear about this connection (None: brokerlink users')."""
    return connection.end_user.app_id if connection.end_user_id else None


def webhook_payload(event_type: str, data: dict, *, created_at: datetime) -> dict:
    """The body of every event: {type, version, timestamp, data}."""
    return {"type": event_type, "version": PAYLOAD_VERSION, "timestamp": created_at.isoformat(), "data": data}


def webhook_enqueue(
    event_type: str, data: dict, *, connection_id=None, event_id: uuid.UUID | None = None, app_id=None
) -> list:
    """One delivery per enabled endpoint that wants this event type; each sent by a task.
    `app_id`: the partner app the event is about; only that app's endpoints get it (none:
    only the endpoints without an app), so no app hears of another's end users."""
    wanting = WebhookEndpoint.objects.filter(enabled=True, app_id=app_id)
    if event_id is not None:
        # An event announced again (an expiry warning whose email is retried) goes to no
        # endpoint twice: the event id is what makes it the same event.
        wanting = wanting.exclude(deliveries__event_id=event_id)
    endpoints = [e for e in wanting if e.wants(event_type)]
    if not endpoints:
        return []
    now = timezone.now()
    event_id = event_id or uuid.uuid4()
    payload = webhook_payload(event_type, data, created_at=now)
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=e, event_id=event_id, event=event_type, connection_id=connection_id, payload=payload,
            next_attempt_at=now,
        )
        for e in endpoints
    )
    for delivery in deliveries:
        _send_task(delivery.pk)
    logger.info("ops.webhooks.enqueued", extra={"event": event_type, "deliveries": len(deliveries)})
    return deliveries


def _send_task(delivery_id, countdown: float | None = None) -> None:
    # By name: ops.tasks imports this module, so importing it back would be a cycle.
    from celery import current_app

    try:
        current_app.send_task("ops.tasks.webhook_deliver", args=[str(delivery_id)], countdown=countdown)
    except Exception:  # noqa: BLE001 - the beat's retry sweep sends it when the broker is back
        logger.warning("ops.webhooks.task_not_sent", extra={"delivery_id": str(delivery_id)})


def _revocation_event(event) -> tuple[str | None, dict]:
    """What a revocation outcome (REVOKED / REVOCATION_FAILED after a disconnect) tells
    receivers: the disconnect's first outcome is `connection.revoked`, whatever the broker
    said; a later "Try revoking again" is `connection.revocation_confirmed` when the broker
    confirmed, and nothing when it still did not (nothing changed)."""
    from connections.models import Connection, ConnectionEvent

    K = ConnectionEvent.Kind
    history = ConnectionEvent.objects.filter(connection_id=event.connection_id).exclude(pk=event.pk)
    disconnect = (
        history.filter(kind=K.DISCONNECTED, created_at__lte=event.created_at)
        .order_by("-created_at", "-id")
        .values_list("from_status", "created_at")
        .first()
    )
    previous_status, disconnected_at = disconnect or ("", None)
    earlier = history.filter(kind__in=[K.REVOKED, K.REVOCATION_FAILED], created_at__lte=event.created_at)
    if disconnected_at is not None:
        earlier = earlier.filter(created_at__gte=disconnected_at)
    confirmed = event.kind == K.REVOKED
    retry = earlier.exists()
    if retry and not confirmed:
        return None, {}
    kept = Connection.objects.filter(pk=event.connection_id).exclude(revoke_pending_sealed="").exists()
    revocation = {"confirmed": confirmed, "retry_possible": not confirmed and kept}
    if not confirmed:
        revocation["reason"] = {"category": event.category, "message": event.message.removeprefix("Not revoked: ")}
    return ("connection.revocation_confirmed" if retry else "connection.revoked"), {
        "previous_status": previous_status,
        "revoked_at_broker": confirmed,
        "revocation": revocation,
    }


def on_events_committed(sender, events: list, **kwargs) -> None:
    """Receiver of connections.outbox.event_committed: the webhooks these committed history
    entries stand for. One entry that fails is logged and does not stop the others."""
    for event in events:
        try:
            connection_event_webhook(event)
        except Exception:  # noqa: BLE001 - a webhook problem never affects the change itself
            logger.exception("ops.webhooks.enqueue_failed", extra={"connection_event_id": event.pk})


def connection_event_webhook(event) -> list:
    """Enqueue the webhook one committed ConnectionEvent stands for, if any."""
    from_status = _status_before_check(event.connection_id, event.from_status, event.created_at)
    event_type = event_type_for(kind=event.kind, from_status=from_status, to_status=event.to_status)
    if event_type is None:
        return []
    connection = event.connection
    data = {"connection": _connection_data(connection), "previous_status": from_status}
    if event_type == "connection.revoked":
        event_type, extra = _revocation_event(event)
        if event_type is None:
            return []
        data.update(extra)
    if event_type in ("connection.broken", "connection.refresh_failed", "connection.fixed"):
        data["reason"] = {"category": event.category, "message": event.message}
    if event_type in ("connection.broken", "connection.refresh_failed"):
        from connections.models import ConnectionStatus

        data["needs_reauth"] = (
            event.to_status == ConnectionStatus.NEEDS_REAUTH or connection.status == ConnectionStatus.NEEDS_REAUTH
            or (event.kind == "refresh_failed" and event.category == "auth")
        )
    return webhook_enqueue(event_type, data, connection_id=connection.pk, app_id=_app_of(connection))


# Names the event ids of connection.expiring (uuid5 of the warning's connection and deadline).
EXPIRING_NAMESPACE = uuid.UUID("8f0c5d3e-54a1-4c1e-9d0b-6a7f2e1c9b40")


def expiring_event_id(connection_id, deadline: datetime) -> uuid.UUID:
    """One id per warning: the connection and the deadline warned about (the Notification's own
    key), whatever row records it now."""
    return uuid.uuid5(EXPIRING_NAMESPACE, f"{connection_id}/{deadline.astimezone(UTC).isoformat()}")


def on_notification_committed(sender, notification, **kwargs) -> None:
    """Receiver of connections.outbox.notification_committed: an expiry warning is connection.expiring.

    Once per warning: when its email fails, the engine forgets the notification and records it
    again on the next try (engine.notifications), and every record is announced;
    the event id, the same for every record of one warning, keeps the webhook to one."""
    if notification.kind != "expiry_warning":
        return
    connection = notification.connection
    data = {"connection": _connection_data(connection), "deadline": notification.incident_at.isoformat()}
    webhook_enqueue(
        "connection.expiring",
        data,
        connection_id=connection.pk,
        app_id=_app_of(connection),
        event_id=expiring_event_id(connection.pk, notification.incident_at),
    )


# --- delivery ------------------------------------------------------------------------------


def retry_delay(attempts: int) -> float | None:
    """Seconds before the next attempt after `attempts` failed ones (None: give up), jittered."""
    if attempts > len(RETRY_SCHEDULE):
        return None
    base = RETRY_SCHEDULE[attempts - 1] * webhook_setting("SCHEDULE_SCALE")
    return base * random.uniform(1 - JITTER, 1 + JITTER)


def webhook_deliver(delivery_id, *, now: datetime | None = None) -> str:
    """Try one delivery once, if it is due. Returns its status afterwards ("skipped" when it
    was not due, already delivered, or claimed by someone else)."""
    now = now or timezone.now()
    claim_until = now + timedelta(seconds=webhook_setting("CLAIM_SECONDS"))
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=claim_until)
    if not claimed:
        return "skipped"
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    endpoint = delivery.endpoint
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "brokerlink-webhooks/2",
        **webhook_headers(endpoint, str(delivery.event_id), body),
    }
    delivery.attempts += 1
    if delivery.attempts == 1 or delivery.first_attempt_at is None:
        delivery.first_attempt_at = timezone.now()
    error, status_code = "", None
    if not endpoint.enabled:
        error = "The endpoint is disabled."
    else:
        try:
            response = outbound_session().post(
                endpoint.url, data=body, headers=headers, timeout=webhook_setting("TIMEOUT_SECONDS"),
                allow_redirects=False,
            )
            status_code = response.status_code
            if 300 <= status_code < 400:
                error = f"The endpoint answered with a redirect (HTTP {status_code}); redirects are not followed."
            elif not 200 <= status_code < 300:
                error = f"The endpoint answered HTTP {status_code}."
        except (requests.RequestException, OutboundRefused) as exc:
            if refused_by_policy(exc):
                error = "The endpoint's URL is not allowed (https to a public host only)."
            else:
                error = f"No answer from the endpoint ({type(exc).__name__})."
    delivery.response_status = status_code
    delivery.last_error = error[:500]
    delay = None if not error else retry_delay(delivery.attempts)
    if not error:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(last_success_at=delivery.delivered_at)
    elif delay is None or not endpoint.enabled:
        delivery.status = WebhookDelivery.Status.FAILED
    else:
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    delivery.save(
        update_fields=["attempts", "status", "response_status", "last_error", "delivered_at", "next_attempt_at",
                       "first_attempt_at"]
    )
    logger.info(
        "ops.webhooks.attempt",
        extra={"delivery_id": str(delivery.pk), "event": delivery.event, "attempt": delivery.attempts,
               "http_status": status_code, "status": delivery.status},
    )
    if delivery.status == WebhookDelivery.Status.PENDING:
        _send_task(delivery.pk, countdown=max(0.0, (delivery.next_attempt_at - timezone.now()).total_seconds()))
    elif delivery.status == WebhookDelivery.Status.FAILED and endpoint.enabled:
        _disable_if_failing(endpoint, delivery)
    return delivery.status


def _disable_if_failing(endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> None:
    """A delivery gave up after the whole schedule; if the endpoint accepted nothing since that
    delivery's first attempt, it is down for good: disable it and tell its owner."""
    endpoint.refresh_from_db()
    since = delivery.first_attempt_at or delivery.created_at
    if endpoint.last_success_at and endpoint.last_success_at >= since:
        return
    reason = (
        f"Disabled after failing every attempt since {since:%Y-%m-%d %H:%M} UTC "
        f"({delivery.attempts} attempts of a {delivery.event} event; last: {delivery.last_error})"
    )[:500]
    changed = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
        enabled=False, disabled_at=timezone.now(), disabled_reason=reason
    )
    if not changed:
        return
    logger.warning("ops.webhooks.endpoint_disabled", extra={"endpoint_id": str(endpoint.pk)})
    subject = f"brokerlink disabled the webhook endpoint {endpoint}"
    body = (
        f"{reason}.\n\nEndpoint: {endpoint.url}\nFix the receiver, then enable the endpoint again in the admin "
        f"({settings.SITE_URL}/admin/ops/webhookendpoint/{endpoint.pk}/change/) and replay the deliveries "
        "that gave up.\n"
    )
    owner_email = getattr(endpoint.owner, "email", "") if endpoint.owner_id else ""
    try:
        if owner_email:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [owner_email])
        else:
            mail_admins(subject, body)
    except Exception:  # noqa: BLE001 - the endpoint is disabled either way; the admin shows why
        logger.exception("ops.webhooks.owner_mail_failed", extra={"endpoint_id": str(endpoint.pk)})


def webhooks_due(*, now: datetime | None = None, limit: int = 500) -> list:
    now = now or timezone.now()
    return list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def webhook_retry_now(delivery: WebhookDelivery) -> bool:
    """Admin: make a pending or given-up delivery due now (a delivered one stays delivered)."""
    changed = WebhookDelivery.objects.filter(pk=delivery.pk).exclude(status=WebhookDelivery.Status.DELIVERED).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now()
    )
    if changed:
        _send_task(delivery.pk)
    return bool(changed)


def webhook_replay(delivery: WebhookDelivery) -> bool:
    """Admin: send this event to its endpoint again, whatever happened before, with a fresh
    retry schedule. Same webhook-id: a receiver that already has it can tell."""
    changed = WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now(), attempts=0, first_attempt_at=None,
        delivered_at=None, last_error="", response_status=None,
    )
    if changed:
        _send_task(delivery.pk)
    logger.info("ops.webhooks.replayed", extra={"delivery_id": str(delivery.pk)})
    return bool(changed)
