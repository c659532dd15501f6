"""Notifications to a connection's owner (by email and their channels, as they chose in
preferences): needs re-authentication, failed, broker outage, their ends, and warnings
ahead of a hard expiry. One email per incident, and every promise an email makes is kept.

An incident starts when the connection enters a problem status and lasts until its recovery
email: entering Broker outage again meanwhile (a "Check now" during the outage, the circuit's
probe failing) is the same incident, not a new email. Needs-you statuses are left only by a
reconnect, so entering one again is a new incident.

- needs_reauth: sent at once. The broker itself refused the grant, so it cannot flap: the
  connection stays there until the person reconnects.
- failed: sent at once; by definition the connection already failed the broker's whole
  retry budget (BackoffPolicy.max_attempts checks).
- recovered: only after a needs_reauth/failed email went out for the incident, and only once
  the connection's last NOTIFY_AFTER_CHECKS checks since the incident all passed, so a
  connection that flaps does not produce a storm of "fixed"/"broken" pairs. One email closes
  every open incident of the connection (two incidents before a recovery: one "recovered").
- broker_outage: sent at once when the connection enters Broker outage (the circuit opened).
  It promises word when the connection works again: "outage_over" (under the same
  broker-outage setting, so whoever heard of the outage hears of its end) once the
  connection passed its NOTIFY_AFTER_CHECKS checks; "recovered" when a needs-you incident
  was open too.
- expiry_warning: once per deadline (reauth_deadline_at: Schwab's 7-day cap, a daily
  wall-clock expiry without refresh token), EXPIRY_WARNING_AHEAD before it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, Min, OuterRef
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from brokers.registry import UnknownBroker, get_profile
from connections import outbox
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.state import INACTIVE_STATUSES, connection_event_record
from engine.checkstore import rings_for
from engine.conf import engine_setting
from engine.models import Notification
from preferences.notify import notification_deliver
from preferences.timezones import user_zone

logger = logging.getLogger(__name__)
Kind = Notification.Kind

PROBLEM_KINDS = {
    ConnectionStatus.NEEDS_REAUTH: Kind.NEEDS_REAUTH,
    ConnectionStatus.FAILED: Kind.FAILED,
    ConnectionStatus.BROKER_OUTAGE: Kind.BROKER_OUTAGE,
}
NEEDS_YOU_KINDS = {Kind.NEEDS_REAUTH, Kind.FAILED}


def recovery_kind(closed_kinds) -> str:
    """The email that ends the incidents being closed: "works again" after a needs-you
    incident, "the outage is over" after an outage alone."""
    return Kind.RECOVERED if set(closed_kinds) & NEEDS_YOU_KINDS else Kind.OUTAGE_OVER


def expiry_warning_ahead(connection: Connection) -> timedelta:
    """How long before a hard deadline to warn: two days for long grants (Schwab's 7 days), two
    hours for grants that only live a day (daily-expiry brokers)."""
    started, deadline = connection.grant_started_at, connection.reauth_deadline_at
    if started and deadline and deadline - started <= timedelta(days=1, hours=1):
        return timedelta(hours=2)
    return timedelta(days=2)


def broker_name(connection: Connection) -> str:
    try:
        return get_profile(connection.broker_slug).name
    except UnknownBroker:
        return connection.broker_slug.title()


def reconnect_url(connection: Connection) -> str:
    """The connection's page (absolute, from SITE_URL), where its Reconnect button is.

    Not the reconnect URL itself: that one is POST-only (it starts an OAuth flow), so a link
    in an email would open a 405 page."""
    site = settings.SITE_URL.rstrip("/")
    try:
        return site + reverse("connections:detail", kwargs={"connection_id": connection.pk})
    except NoReverseMatch:
        return f"{site}/connections/"


def notification_send(*, connection: Connection, kind: str, incident_at: datetime, now: datetime | None = None) -> bool:
    """Send one notification unless it was already sent for this incident, where the owner
    wants it (preferences.notify: kinds on/off, email, personal channels). Returns True if sent."""
    now = now or timezone.now()
    if connection.user_id is None:
        # A partner app's end user: brokerlink has no address, the app hears it by webhook.
        # Problems already are webhooks (status changes); a coming deadline is not, so its
        # warning is recorded, once per deadline, and that record (announced by the outbox
        # after commit) is what ops.webhooks sends to the app as connection.expiring.
        if kind == Kind.EXPIRY_WARNING:
            try:
                with transaction.atomic():
                    notification = Notification.objects.create(
                        connection=connection, kind=kind, incident_at=incident_at, to_email="", sent_at=now
                    )
                    outbox.notification_dispatch_on_commit(notification)
            except IntegrityError:
                pass
        return False
    email = getattr(connection.user, "email", "") or ""
    try:
        with transaction.atomic():
            notification = Notification.objects.create(
                connection=connection, kind=kind, incident_at=incident_at, to_email=email, sent_at=now
            )
            outbox.notification_dispatch_on_commit(notification)
    except IntegrityError:
        return False
    context = {
        "connection": connection,
        "user": connection.user,
        "reconnect_url": reconnect_url(connection),
        "deadline": connection.reauth_deadline_at,
        "message": connection.last_error_message,
        "site_url": settings.SITE_URL,
        "broker_name": broker_name(connection),
        "account_name": connection.nickname or connection.account_label or connection.account_number_masked,
    }
    with timezone.override(user_zone(connection.user)):
        subject = " ".join(render_to_string(f"engine/email/{kind}_subject.txt", context).split())
        body = render_to_string(f"engine/email/{kind}.txt", context)
    try:
        delivery = notification_deliver(user=connection.user, kind=kind, subject=subject, body=body)
    except Exception:  # noqa: BLE001 - the mail server, not us: forget the decision, retry next time
        Notification.objects.filter(connection=connection, kind=kind, incident_at=incident_at).delete()
        logger.exception("connections.notification.send_failed", extra={"connection_id": str(connection.pk)})
        return False
    if not delivery:
        return False  # the owner turned this kind off, or has nowhere to receive it
    where = ", ".join(delivery.sent)
    connection_event_record(
        connection=connection, kind=ConnectionEvent.Kind.NOTIFIED, message=f"Notification sent ({where}): {kind}."
    )
    logger.info("connections.notification.sent", extra={"connection_id": str(connection.pk), "kind": kind})
    return True


def notifications_dispatch(*, now: datetime | None = None) -> int:
    """Send what is due: problem emails, then recoveries. Cheap when nothing is due."""
    now = now or timezone.now()
    sent = 0
    for status, kind in PROBLEM_KINDS.items():
        already = Notification.objects.filter(
            connection=OuterRef("pk"), kind=kind, incident_at=OuterRef("status_changed_at")
        )
        problems = (
            Connection.objects.select_related("user", "engine_state")
            .filter(status=status, user__isnull=False)
            .exclude(Exists(already))
        )
        if kind == Kind.BROKER_OUTAGE:
            # The same outage, re-entered before its end was told (a Check now during it, the
            # circuit's probe failing): one incident. Needs-you statuses are left only by a
            # reconnect, so entering one again is always a new incident.
            still_open = Notification.objects.filter(connection=OuterRef("pk"), kind=kind, resolved_at__isnull=True)
            problems = problems.exclude(Exists(still_open))
        for connection in problems[:1000]:
            incident_at = connection.status_changed_at
            sent += notification_send(connection=connection, kind=kind, incident_at=incident_at, now=now)
    needed = max(1, int(engine_setting("NOTIFY_AFTER_CHECKS")))
    open_incidents = (
        Notification.objects.filter(
            kind__in=list(PROBLEM_KINDS.values()),
            resolved_at__isnull=True,
            connection__status=ConnectionStatus.CONNECTED,
            connection__user__isnull=False,
        )
        .values("connection_id")
        .annotate(first=Min("incident_at"))
    )
    for row in open_incidents[:1000]:
        # Every check since the problem began counts (the one that brought it back too); the
        # connection was inactive in between, so these are all checks after the reconnect.
        log = rings_for([row["connection_id"]])[row["connection_id"]]
        recent = [c.ok for c in log.checks if c.checked_at >= row["first"]][-needed:]
        if len(recent) < needed or not all(recent):
            continue
        incidents = Notification.objects.filter(
            connection_id=row["connection_id"], kind__in=list(PROBLEM_KINDS.values()), resolved_at__isnull=True
        )
        ids, kinds = [], set()
        for pk, kind in incidents.values_list("pk", "kind"):
            ids.append(pk)
            kinds.add(kind)
        latest = incidents.order_by("-incident_at").values_list("incident_at", flat=True).first()
        if latest is None or not incidents.update(resolved_at=now):
            continue  # another dispatcher closed it meanwhile
        connection = Connection.objects.select_related("user", "engine_state").get(pk=row["connection_id"])
        ending = recovery_kind(kinds)
        sent += notification_send(connection=connection, kind=ending, incident_at=latest, now=now)
        if not Notification.objects.filter(connection=connection, kind=ending, incident_at=latest).exists():
            # The mail server failed (notification_send forgot it): keep the incidents open to retry.
            Notification.objects.filter(pk__in=ids).update(resolved_at=None)
    return sent


def expiry_warnings_send(*, now: datetime | None = None) -> int:
    """Warn owners whose grant hits a hard deadline soon, once per deadline."""
    now = now or timezone.now()
    sent = 0
    soon = (
        Connection.objects.select_related("user", "engine_state")
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
