"""Outgoing webhooks: connection events POSTed as signed JSON to the endpoints operators register.

Events: connected, needs_reauth, recovered (back to connected from degraded / broker outage /
failed), disconnected, failed. Body:

    {"id": "<event uuid>", "type": "recovered", "created_at": "<ISO 8601>",
     "connection": {"id", "broker", "account" (masked), "status", "user_email"}}

Headers: `X-Brokerlink-Timestamp: <unix seconds>` and
`X-Brokerlink-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
Receivers verify with `webhook_signature_verify` (or the same four lines in their language)
and should reject timestamps older than a few minutes. Never carries a token.

A delivery is tried by the `ops.tasks.webhook_deliver` task; failures are retried with
exponential backoff (`WEBHOOK_BACKOFF_SECONDS` x 2^(attempt-1), capped at one hour) up to
`WEBHOOK_MAX_ATTEMPTS`; a beat task picks up due retries whose message was lost. A delivery
is claimed with a conditional UPDATE before sending, and a delivered one is never sent again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from datetime import datetime, timedelta

import requests
from celery import signature as task_signature
from django.db import transaction
from django.utils import timezone

from config.env import tunable
from ops.models import WebhookDelivery, WebhookEndpoint

DELIVER_TASK = "ops.tasks.webhook_deliver"

logger = logging.getLogger(__name__)

EVENT_TYPES = ["connected", "needs_reauth", "recovered", "disconnected", "failed"]
SIGNATURE_HEADER = "X-Brokerlink-Signature"
TIMESTAMP_HEADER = "X-Brokerlink-Timestamp"
BACKOFF_CAP_SECONDS = 3600

DEFAULTS: dict[str, float] = {
    # First retry after this many seconds, doubling each attempt (capped at one hour).
    "BACKOFF_SECONDS": 30,
    # Attempts before a delivery is given up (status "failed").
    "MAX_ATTEMPTS": 8,
    # Per-request timeout; receivers should answer fast and work asynchronously.
    "TIMEOUT_SECONDS": 10,
    # A claimed delivery is not re-claimed for this long (a worker died mid-send).
    "CLAIM_SECONDS": 60,
}


def webhook_setting(name: str) -> float:
    return float(tunable("WEBHOOK", name, DEFAULTS))


# --- signing -----------------------------------------------------------------------------


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def webhook_signature_verify(
    secret: str, timestamp: str, body: bytes, header: str, *, tolerance_seconds: float | None = 300,
    now: float | None = None,
) -> bool:
    """For integrators: True when `header` is the signature of this body at this timestamp and
    the timestamp is within `tolerance_seconds` of now (None skips the age check)."""
    if not secret or not timestamp or not header:
        return False
    if tolerance_seconds is not None:
        try:
            age = abs((now if now is not None else time.time()) - int(timestamp))
        except ValueError:
            return False
        if age > tolerance_seconds:
            return False
    if isinstance(body, str):
        body = body.encode()
    return hmac.compare_digest(webhook_signature(secret, timestamp, body).encode(), header.strip().encode())


# --- events --------------------------------------------------------------------------------


def event_type_for(*, from_status: str, to_status: str, kind: str = "") -> str | None:
    from connections.models import ConnectionEvent, ConnectionStatus

    if kind in (ConnectionEvent.Kind.CONNECTED, ConnectionEvent.Kind.RECONNECTED):
        return "connected"
    if to_status == ConnectionStatus.NEEDS_REAUTH:
        return "needs_reauth"
    if to_status == ConnectionStatus.FAILED:
        return "failed"
    if to_status == ConnectionStatus.DISCONNECTED:
        return "disconnected"
    if to_status == ConnectionStatus.CONNECTED:
        bad = {ConnectionStatus.DEGRADED, ConnectionStatus.BROKER_OUTAGE, ConnectionStatus.FAILED,
               ConnectionStatus.NEEDS_REAUTH}
        if from_status in bad:
            return "recovered"
        if from_status in ("", ConnectionStatus.PENDING):
            return "connected"
    return None


def _status_before_check(connection, from_status: str) -> str:
    """A manual check passes through "checking": look through it to the status before."""
    from connections.models import ConnectionEvent, ConnectionStatus

    if from_status != ConnectionStatus.CHECKING:
        return from_status
    before = (
        ConnectionEvent.objects.filter(connection_id=connection.pk, to_status=ConnectionStatus.CHECKING)
        .order_by("-created_at", "-id")
        .values_list("from_status", flat=True)
        .first()
    )
    return before or from_status


def webhook_payload(connection, event_type: str, *, event_id: uuid.UUID, created_at: datetime) -> dict:
    return {
        "id": str(event_id),
        "type": event_type,
        "created_at": created_at.isoformat(),
        "connection": {
            "id": str(connection.pk),
            "broker": connection.broker_slug,
            "account": connection.account_number_masked,
            "status": connection.status,
            "user_email": connection.user.email,
        },
    }


def webhook_enqueue(connection, event_type: str) -> list[WebhookDelivery]:
    """One delivery per enabled endpoint that wants this event type; each sent by a task."""
    endpoints = [e for e in WebhookEndpoint.objects.filter(enabled=True) if e.wants(event_type)]
    if not endpoints:
        return []
    now = timezone.now()
    event_id = uuid.uuid4()
    payload = webhook_payload(connection, event_type, event_id=event_id, created_at=now)
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=e, event_id=event_id, event=event_type, connection_id=connection.pk, payload=payload,
            next_attempt_at=now,
        )
        for e in endpoints
    )
    for delivery in deliveries:
        _send_task(delivery.pk)
    logger.info(
        "ops.webhooks.enqueued",
        extra={"event": event_type, "connection_id": str(connection.pk), "deliveries": len(deliveries)},
    )
    return deliveries


def _send_task(delivery_id, countdown: float | None = None) -> None:
    # By name, so this module does not import ops.tasks (whose thin tasks import it).
    try:
        task_signature(DELIVER_TASK, args=[str(delivery_id)]).apply_async(countdown=countdown)
    except Exception:  # noqa: BLE001 - the beat's retry sweep sends it when the broker is back
        logger.warning("ops.webhooks.task_not_sent", extra={"delivery_id": str(delivery_id)})


def webhook_enqueue_for_transition(connection, from_status: str, to_status: str, *, kind: str = "", **_) -> None:
    """Receiver of `connections.hub.status_changed` (connected in OpsConfig.ready). Best effort,
    after the transaction commits: a webhook problem never affects the status change itself."""

    def enqueue() -> None:
        try:
            event_type = event_type_for(
                from_status=_status_before_check(connection, from_status), to_status=to_status, kind=kind
            )
            if event_type:
                webhook_enqueue(connection, event_type)
        except Exception:  # noqa: BLE001
            logger.exception("ops.webhooks.enqueue_failed", extra={"connection_id": str(connection.pk)})

    transaction.on_commit(enqueue)


# --- delivery ------------------------------------------------------------------------------


def _backoff(attempts: int) -> float:
    return min(BACKOFF_CAP_SECONDS, webhook_setting("BACKOFF_SECONDS") * 2 ** max(0, attempts - 1))


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
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "brokerlink-webhooks/1",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(endpoint.secret, timestamp, body),
    }
    delivery.attempts += 1
    error, status_code = "", None
    if not endpoint.enabled:
        error = "The endpoint is disabled."
    else:
        try:
            response = requests.post(
                endpoint.url, data=body, headers=headers, timeout=webhook_setting("TIMEOUT_SECONDS"),
                allow_redirects=False,
            )
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"The endpoint answered HTTP {status_code}."
        except requests.RequestException as exc:
            error = f"No answer from the endpoint ({type(exc).__name__})."
    delivery.response_status = status_code
    delivery.last_error = error[:500]
    if not error:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
    elif delivery.attempts >= webhook_setting("MAX_ATTEMPTS"):
        delivery.status = WebhookDelivery.Status.FAILED
    else:
        delivery.next_attempt_at = timezone.now() + timedelta(seconds=_backoff(delivery.attempts))
    delivery.save(
        update_fields=["attempts", "status", "response_status", "last_error", "delivered_at", "next_attempt_at"]
    )
    logger.info(
        "ops.webhooks.attempt",
        extra={"delivery_id": str(delivery.pk), "event": delivery.event, "attempt": delivery.attempts,
               "http_status": status_code, "status": delivery.status},
    )
    if delivery.status == WebhookDelivery.Status.PENDING:
        _send_task(delivery.pk, countdown=max(0.0, (delivery.next_attempt_at - timezone.now()).total_seconds()))
    return delivery.status


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
