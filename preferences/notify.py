"""Delivering a notification to a person as they asked: which kinds, by email or not, and
their personal channels (Apprise URLs allowed by preferences.channels: ntfy, Slack, Telegram,
Discord, Pushover, Teams workflows, JSON/form webhooks over https).

The engine decides *that* something is worth telling (once per incident); this module decides
*where* it goes. A channel that fails is logged and skipped: it never blocks the email or the
other channels, and its URL (which holds its credentials) never reaches a log or a page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from urllib.request import getproxies as environment_proxies

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.utils import timezone

from outbound.clients import pinned_connections
from preferences.channels import ChannelInvalid, channel_check, channel_sender
from preferences.models import NotificationChannel, NotificationSettings
from vault.crypto import VaultError

logger = logging.getLogger(__name__)
# Apprise logs the URLs it calls at debug level; they carry channel credentials.
logging.getLogger("apprise").setLevel(logging.WARNING)

# Engine notification kind -> the setting that turns it on or off.
KIND_SETTING = {
    "needs_reauth": "needs_you",
    "failed": "needs_you",
    "recovered": "recovered",
    "expiry_warning": "expiring",
    "broker_outage": "broker_outage",
    # Whoever was told of the outage hears of its end (the outage email promises it).
    "outage_over": "broker_outage",
}
KIND_TEST = "test"


@dataclass
class Delivery:
    sent: list[str] = field(default_factory=list)  # "email" and channel names
    failed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.sent)


def notification_settings_for(user) -> NotificationSettings:
    """The person's settings; an unsaved all-on row when they never changed them."""
    try:
        return user.notification_settings
    except NotificationSettings.DoesNotExist:
        return NotificationSettings(user=user)


def kind_wanted(settings_row: NotificationSettings, kind: str) -> bool:
    name = KIND_SETTING.get(kind)
    return True if name is None else bool(getattr(settings_row, name))


def channel_display(url: str) -> str:
    """`ntfy://ntfy.sh` for `ntfys://user:pass@ntfy.sh/secret-topic`: scheme and host only."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" if host else f"{parts.scheme}://"


def channel_validate(url: str) -> str:
    """The URL, stripped, when the channel policy allows it; ChannelInvalid otherwise."""
    return channel_check(url).url


def channel_create(*, user, name: str, url: str) -> NotificationChannel:
    limit = int(settings.NOTIFICATION_CHANNELS_MAX)
    if NotificationChannel.objects.filter(user=user).count() >= limit:
        raise ChannelInvalid(f"You have {limit} channels, the most brokerlink keeps per person: remove one first.")
    url = channel_validate(url)
    channel = NotificationChannel(user=user, name=name.strip() or channel_display(url), display=channel_display(url))
    channel.url = url  # sealed, bound to this row's id
    channel.save()
    logger.info("preferences.channel.created", extra={"channel_id": str(channel.pk), "display": channel.display})
    return channel


def channel_send(channel: NotificationChannel, *, subject: str, body: str) -> bool:
    return not channel_send_reason(channel, subject=subject, body=body)


def channel_send_reason(channel: NotificationChannel, *, subject: str, body: str) -> str:
    """Send to one channel: "" when it was sent, else why not, in words its owner can act on."""
    try:
        url = channel.url
    except VaultError:
        logger.warning("preferences.channel.unreadable", extra={"channel_id": str(channel.pk)})
        return "brokerlink could not read this channel's address: remove it and add it again"
    try:
        # Checked again at send time: a channel saved before a policy change, or whose host
        # now resolves somewhere refused, is not sent to.
        channel_check(url)
    except ChannelInvalid as exc:
        logger.warning("preferences.channel.refused", extra={"channel_id": str(channel.pk), "display": channel.display})
        return f"not sent: {exc}"
    if environment_proxies():
        # Apprise's requests would use them, and a proxy connects to the target on our behalf
        # where the pin cannot check it (brokerlink's own clients ignore them for the same reason).
        logger.warning("preferences.channel.proxy_in_environment", extra={"channel_id": str(channel.pk)})
        return "not sent: this server is set to use a proxy, which channels may not go through"
    with pinned_connections():  # every connection Apprise opens: checked address, pinned
        ok = bool(channel_sender(url).notify(title=subject, body=body))
    log = logger.info if ok else logger.warning
    log("preferences.channel.sent" if ok else "preferences.channel.failed", extra={"channel_id": str(channel.pk)})
    return "" if ok else f"{channel.display} did not accept it, or could not be reached in time"


def notification_deliver(*, user, kind: str, subject: str, body: str) -> Delivery:
    """Send to every place the person wants this kind. The email goes first and its failure
    raises (the engine forgets the decision and retries); channels after it, best effort."""
    wanted = notification_settings_for(user)
    delivery = Delivery()
    if not kind_wanted(wanted, kind):
        return delivery
    if wanted.email and user.email:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email], fail_silently=False)
        delivery.sent.append("email")
    for channel in NotificationChannel.objects.filter(user=user, enabled=True):
        (delivery.sent if channel_send(channel, subject=subject, body=body) else delivery.failed).append(channel.name)
    return delivery


def _test_message() -> tuple[str, str]:
    subject = "brokerlink test notification"
    body = (
        "This is a test from brokerlink. If you can read it, notifications reach you here.\n\n"
        f"Change what you receive: {settings.SITE_URL.rstrip('/')}/settings/"
    )
    return subject, body


def notification_send_test(*, user) -> Delivery:
    """Send the test everywhere on and record each outcome for the owner's channel list.
    Runs in a worker (preferences.tasks): a channel that never answers holds a worker slot
    for the server's timeout, never a web request."""
    subject, body = _test_message()
    wanted = notification_settings_for(user)
    delivery = Delivery()
    email_sent = None
    if wanted.email and user.email:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email], fail_silently=False)
        except Exception:  # noqa: BLE001 - the mail server, not us: shown on the settings page
            logger.exception("preferences.notification.test_email_failed")
            delivery.failed.append("email")
            email_sent = False
        else:
            delivery.sent.append("email")
            email_sent = True
    for channel in NotificationChannel.objects.filter(user=user, enabled=True):
        reason = channel_send_reason(channel, subject=subject, body=body)
        (delivery.failed if reason else delivery.sent).append(channel.name)
        NotificationChannel.objects.filter(pk=channel.pk).update(
            last_test_at=timezone.now(), last_test_ok=not reason, last_test_error=reason[:300]
        )
    if wanted.pk:
        NotificationSettings.objects.filter(pk=wanted.pk).update(test_email_sent=email_sent)
    return delivery


def _cooldown_key(user) -> str:
    return f"preferences:test-cooldown:{user.pk}"


def notification_test_cooldown_reset(*, user) -> None:
    """Let this person send a test again now (support, and tests of the page)."""
    cache.delete(_cooldown_key(user))


class NotificationTestTooSoon(Exception):
    """A test was asked for less than NOTIFICATION_TEST_COOLDOWN_SECONDS ago."""


def notification_test_request(*, user) -> None:
    """Record that a test was asked for (at most one per cooldown); the caller queues the
    worker's task (preferences.tasks.notification_test_send) once this commits.

    The page answers at once with one generic sentence; what each channel answered is shown
    in the owner's channel list when the worker has sent it."""
    cooldown = int(settings.NOTIFICATION_TEST_COOLDOWN_SECONDS)
    if cooldown > 0 and not cache.add(_cooldown_key(user), 1, timeout=cooldown):
        raise NotificationTestTooSoon
    row, _ = NotificationSettings.objects.get_or_create(user=user)
    NotificationSettings.objects.filter(pk=row.pk).update(test_requested_at=timezone.now(), test_email_sent=None)
    NotificationChannel.objects.filter(user=user, enabled=True).update(
        last_test_at=None, last_test_ok=None, last_test_error=""
    )
