"""Delivering a notification to a person as they asked: which kinds, by email or not, and
their personal channels (any Apprise URL: ntfy, Slack, Telegram, Discord, a JSON webhook…).

The engine decides *that* something is worth telling (once per incident); this module decides
*where* it goes. A channel that fails is logged and skipped: it never blocks the email or the
other channels, and its URL (which holds its credentials) never reaches a log or a page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import apprise
from django.conf import settings
from django.core.mail import send_mail

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


class ChannelInvalid(ValueError):
    pass


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
    url = url.strip()
    if "://" not in url:
        raise ChannelInvalid("Enter an Apprise URL such as ntfy://ntfy.sh/my-topic or slack://…")
    if apprise.Apprise.instantiate(url) is None:
        raise ChannelInvalid(f"Apprise does not recognise a “{urlsplit(url).scheme}://” URL.")
    return url


def channel_create(*, user, name: str, url: str) -> NotificationChannel:
    url = channel_validate(url)
    channel = NotificationChannel(user=user, name=name.strip() or channel_display(url), display=channel_display(url))
    channel.url = url  # sealed, bound to this row's id
    channel.save()
    logger.info("preferences.channel.created", extra={"channel_id": str(channel.pk), "display": channel.display})
    return channel


def channel_send(channel: NotificationChannel, *, subject: str, body: str) -> bool:
    try:
        url = channel.url
    except VaultError:
        logger.warning("preferences.channel.unreadable", extra={"channel_id": str(channel.pk)})
        return False
    sender = apprise.Apprise()
    if not sender.add(url):
        logger.warning("preferences.channel.invalid", extra={"channel_id": str(channel.pk), "display": channel.display})
        return False
    ok = bool(sender.notify(title=subject, body=body))
    log = logger.info if ok else logger.warning
    log("preferences.channel.sent" if ok else "preferences.channel.failed", extra={"channel_id": str(channel.pk)})
    return ok


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


def notification_send_test(*, user) -> Delivery:
    subject = "brokerlink test notification"
    body = (
        "This is a test from brokerlink. If you can read it, notifications reach you here.\n\n"
        f"Change what you receive: {settings.SITE_URL.rstrip('/')}/settings/"
    )
    try:
        return notification_deliver(user=user, kind=KIND_TEST, subject=subject, body=body)
    except Exception:  # noqa: BLE001 - the mail server, not us: say so on the page
        logger.exception("preferences.notification.test_email_failed")
        delivery = Delivery(failed=["email"])
        for channel in NotificationChannel.objects.filter(user=user, enabled=True):
            (delivery.sent if channel_send(channel, subject=subject, body=body) else delivery.failed).append(
                channel.name
            )
        return delivery
