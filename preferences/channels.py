"""Which personal channels brokerlink sends to: the notification-channel policy.

A channel is an Apprise URL a signed-in person types, so it is an outbound URL like a broker's
(security finding of issue 24: `json://127.0.0.1:…`, `jsons://10.0.0.5:2375/…`, `mailto://`,
`syslog://` all reached inside). The rules, checked when a channel is saved and again before
every send:

- Only the schemes in `SCHEMES` (personal notification services that Apprise reaches over
  HTTP through `requests`, so every connection passes `outbound.clients.pinned_connections`).
  Anything else (mail, syslog, MQTT, raw sockets, Apprise-to-Apprise…) is refused with the
  list of what is allowed.
- A host the person chooses (ntfy server, JSON/form webhook, Power Automate workflow) goes
  through the outbound policy: no loopback, private, link-local, metadata, CGNAT or
  embedded-IPv4 forms; https in production (plain http only to loopback in development).
  Services with fixed hosts (Slack, Discord, Telegram, Pushover) are checked when sent.
- Options that override the server's choices are refused: timeouts (`cto`, `rto`), TLS
  checking (`verify`), redirects, retries, the HTTP method, attachments fetched from a URL,
  and headers that change where or how the request is framed.

Messages are generic about the network: they say the host is not allowed, never whether it
exists or a port is open.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import apprise

from outbound.policy import outbound_url_problem


@dataclass(frozen=True)
class Scheme:
    label: str
    user_host: bool  # the person chooses the host: it goes through the outbound policy when saved


# Canonical Apprise scheme (what `plugin.url()` writes) -> what it is. Apprise also accepts a
# service's own https URL (a Slack or Discord webhook URL, https://ntfy.sh/topic) and turns it
# into one of these, so those keep working.
SCHEMES: dict[str, Scheme] = {
    "ntfys": Scheme("ntfy over https (ntfy.sh or your own server)", user_host=True),
    "ntfy": Scheme("ntfy (ntfy://topic goes to ntfy.sh over https; a plain-http server only in development)", True),
    "slack": Scheme("Slack incoming webhook or bot", user_host=False),
    "discord": Scheme("Discord webhook", user_host=False),
    "tgram": Scheme("Telegram bot", user_host=False),
    "pover": Scheme("Pushover", user_host=False),
    "workflow": Scheme("Microsoft Teams through a Power Automate workflow (workflows://)", user_host=True),
    "jsons": Scheme("a JSON webhook over https", user_host=True),
    "json": Scheme("a JSON webhook (plain http only in development)", user_host=True),
    "forms": Scheme("a form-post webhook over https", user_host=True),
    "form": Scheme("a form-post webhook (plain http only in development)", user_host=True),
}
ALLOWED_TEXT = "ntfys://, ntfy://, slack://, discord://, tgram://, pover://, workflows://, jsons://, forms://"

# Apprise URL options a person may not set: the server's timeouts, TLS checks, redirect and
# retry behaviour, and what a request does (method, attachments fetched from a URL).
REFUSED_OPTIONS = frozenset({"cto", "rto", "verify", "redirect", "retry", "wait", "method", "attach", "attachment"})
# Headers (`+Name=value` options) that would reframe or redirect the request.
REFUSED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "expect"})


class ChannelInvalid(ValueError):
    """A channel URL brokerlink will not send to; the message is safe to show its owner."""


@dataclass(frozen=True)
class CheckedChannel:
    url: str
    scheme: str


def _asset() -> apprise.AppriseAsset:
    # Sequential (the pin is per thread) and never following a redirect (a 3xx is a failure).
    return apprise.AppriseAsset(async_mode=False, http_redirects=False)


def channel_sender(url: str) -> apprise.Apprise:
    """An Apprise object holding this one (already checked) channel, with brokerlink's asset."""
    sender = apprise.Apprise(asset=_asset())
    sender.add(url)
    return sender


def _refused_option(url: str) -> str | None:
    for key, _value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        name = key.strip().lower()
        if name in REFUSED_OPTIONS:
            return f"The option “{name}=” is not allowed: brokerlink sets timeouts, TLS checks and the request itself."
        if name.startswith("+") and name[1:] in REFUSED_HEADERS:
            return f"The header “{name[1:]}” cannot be set on a channel."
    return None


def _host_problem(plugin) -> str | None:
    """The outbound policy's verdict on the host a user-host channel connects to."""
    if getattr(plugin, "mode", None) == "cloud":  # ntfy://topic: ntfy.sh over https
        host, port, secure = "ntfy.sh", None, True
    else:
        host, port, secure = (plugin.host or ""), plugin.port, bool(plugin.secure)
    host = host.strip("[]")
    if not host:
        return "must name a host"
    literal = f"[{host}]" if ":" in host else host
    target = f"{'https' if secure else 'http'}://{literal}{f':{port}' if port else ''}/"
    return outbound_url_problem(target)


def channel_check(url: str) -> CheckedChannel:
    """The channel policy: a CheckedChannel, or ChannelInvalid saying why and what is allowed."""
    url = (url or "").strip()
    if "://" not in url:
        raise ChannelInvalid(f"Enter an Apprise URL such as ntfys://ntfy.sh/my-topic. Allowed: {ALLOWED_TEXT}")
    refused = _refused_option(url)
    if refused:
        raise ChannelInvalid(refused)
    plugin = apprise.Apprise.instantiate(url, asset=_asset())
    scheme = urlsplit(plugin.url(privacy=False)).scheme.lower() if plugin is not None else ""
    if scheme not in SCHEMES:
        raise ChannelInvalid(
            f"brokerlink does not send to “{urlsplit(url).scheme}://” channels. Allowed: {ALLOWED_TEXT}"
        )
    if not getattr(plugin, "verify_certificate", True):
        raise ChannelInvalid("The option “verify=” is not allowed: brokerlink always checks certificates.")
    if SCHEMES[scheme].user_host:
        problem = _host_problem(plugin)
        if problem:
            raise ChannelInvalid(f"This channel's host is not allowed: it {problem}.")
    return CheckedChannel(url=url, scheme=scheme)
