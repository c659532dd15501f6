"""Emails to a connection's owner: needs re-authentication, failed, recovered, and warnings
ahead of a hard expiry. Each is sent once per incident (Notification's unique key).

- needs_reauth: sent at once. The broker itself refused the grant, so it cannot flap: the
  connection stays there until the person reconnects.
- failed: sent at once; by definition the connection already failed the broker's whole
  retry budget (BackoffPolicy.max_attempts checks).
- recovered: only after a needs_reauth/failed email went out for the incident, and only once
  the connection has passed NOTIFY_AFTER_CHECKS checks in a row since it came back, so a
  connection that flaps does not produce a storm of "fixed"/"broken" pairs.
- expiry_warning: once per deadline (reauth_deadline_at: Schwab's 7-day cap, a daily
  wall-clock expiry without refresh token), EXPIRY_WARNING_AHEAD before it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from connections.engine.conf import engine_setting
from connections.engine.models import Notification
from connections.models import CheckResult, Connection, ConnectionEvent, ConnectionStatus
from connections.state import INACTIVE_STATUSES, connection_event_record

logger = logging.getLogger(__name__)
Kind = Notification.Kind

PROBLEM_KINDS = {ConnectionStatus.NEEDS_REAUTH: Kind.NEEDS_REAUTH, ConnectionStatus.FAILED: Kind.FAILED}


def expiry_warning_ahead(connection: Connection) -> timedelta:
    """How long before a hard deadline to warn: two days for long grants (Schwab's 7 days), two
    hours for grants that only live a day (daily-expiry brokers)."""
    started, deadline = connection.grant_started_at, connection.reauth_deadline_at
    if started and deadline and deadline - started <= timedelta(days=1, hours=1):
        return timedelta(hours=2)
    return timedelta(days=2)


def reconnect_url(connection: Connection) -> str:
    for name, kwargs in (
        ("connections:reconnect", {"pk": connection.pk}),
        ("connections:detail", {"pk": connection.pk}),
    ):
        try:
            return settings.SITE_URL.rstrip("/") + reverse(name, kwargs=kwargs)
        except NoReverseMatch:
            continue
    return f"{settings.SITE_URL.rstrip('/')}/connections/"


def notification_send(*, connection: Connection, kind: str, incident_at: datetime, now: datetime | None = None) -> bool:
    """Send one email unless it was already sent for this incident. Returns True if sent."""
    now = now or timezone.now()
    email = getattr(connection.user, "email", "") or ""
    try:
        with transaction.atomic():
            Notification.objects.create(
                connection=connection, kind=kind, incident_at=incident_at, to_email=email, sent_at=now
            )
    except IntegrityError:
        return False
    if not email:
        return False
    context = {
        "connection": connection,
        "user": connection.user,
        "reconnect_url": reconnect_url(connection),
        "deadline": connection.reauth_deadline_at,
        "message": connection.last_error_message,
        "site_url": settings.SITE_URL,
    }
    subject = render_to_string(f"connections/email/{kind}_subject.txt", context).strip()
    body = render_to_string(f"connections/email/{kind}.txt", context)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [email], fail_silently=False)
    connection_event_record(connection=connection, kind=ConnectionEvent.Kind.NOTIFIED, message=f"Email sent: {kind}.")
    logger.info("connections.notification.sent", extra={"connection_id": str(connection.pk), "kind": kind})
    return True


def notifications_dispatch(*, now: datetime | None = None) -> int:
    """Send what is due: problem emails, then recoveries. Cheap when nothing is due."""
    now = now or timezone.now()
    sent = 0
    problems = (
        Connection.objects.select_related("user")
        .filter(status__in=list(PROBLEM_KINDS))
        .exclude(notifications__incident_at=F("status_changed_at"))
    )
    for connection in problems[:1000]:
        sent += notification_send(
            connection=connection,
            kind=PROBLEM_KINDS[connection.status],
            incident_at=connection.status_changed_at,
            now=now,
        )
    needed = int(engine_setting("NOTIFY_AFTER_CHECKS"))
    open_incidents = Notification.objects.select_related("connection__user").filter(
        kind__in=list(PROBLEM_KINDS.values()), resolved_at__isnull=True, connection__status=ConnectionStatus.CONNECTED
    )
    for incident in open_incidents[:1000]:
        connection = incident.connection
        recent = list(
            CheckResult.objects.filter(connection=connection, checked_at__gte=connection.status_changed_at)
            .order_by("-checked_at")
            .values_list("ok", flat=True)[:needed]
        )
        if len(recent) < needed or not all(recent):
            continue
        Notification.objects.filter(pk=incident.pk).update(resolved_at=now)
        sent += notification_send(connection=connection, kind=Kind.RECOVERED, incident_at=incident.incident_at, now=now)
    return sent


def expiry_warnings_send(*, now: datetime | None = None) -> int:
    """Warn owners whose grant hits a hard deadline soon, once per deadline."""
    now = now or timezone.now()
    sent = 0
    soon = (
        Connection.objects.select_related("user")
        .exclude(status__in=INACTIVE_STATUSES)
        .filter(reauth_deadline_at__gt=now, reauth_deadline_at__lte=now + timedelta(days=2))
    )
    for connection in soon.iterator():
        if connection.reauth_deadline_at - now > expiry_warning_ahead(connection):
            continue
        sent += notification_send(
            connection=connection, kind=Kind.EXPIRY_WARNING, incident_at=connection.reauth_deadline_at, now=now
        )
    return sent
