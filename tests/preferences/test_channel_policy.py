"""Issue 24, high: notification channels must not reach inside.

Each refused form is aimed at a TCP listener on 127.0.0.1 that must receive nothing, both when
the channel is saved and when a row saved before the policy (written straight to the
database) is sent to. Production mode: the development switch for loopback http is off.
"""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from outbound import clients, policy
from outbound.clients import pinned_connections
from preferences.channels import ChannelInvalid, channel_check
from preferences.models import NotificationChannel
from preferences.notify import channel_create, channel_send

pytestmark = pytest.mark.django_db

PUBLIC = "93.184.215.14"  # a global unicast address; never dialled (the connection is intercepted)


class Listener:
    """Accepts TCP connections on 127.0.0.1 and counts them; a refused channel must leave it at 0."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop = True
        self.sock.close()


@pytest.fixture
def listener():
    listening = Listener()
    yield listening
    listening.close()


@pytest.fixture
def production(settings):
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = False


REFUSED_FORMS = [
    "json://127.0.0.1:{port}/computeMetadata/v1/?+Metadata-Flavor=Google&method=GET",
    "json://127.0.0.1:{port}/hook",
    "jsons://127.0.0.1:{port}/containers/create",
    "json://localhost:{port}/x",
    "json://[::ffff:127.0.0.1]:{port}/",
    "json://[::ffff:7f00:1]:{port}/",
    "jsons://[2002:7f00:1::1]:{port}/",  # 6to4 wrapping 127.0.0.1
    "jsons://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/",  # Teredo wrapping 127.0.0.1
    "xml://127.0.0.1:{port}/?method=PUT",
    "form://127.0.0.1:{port}/",
    "forms://127.0.0.1:{port}/",
    "mailto://127.0.0.1:{port}?mode=insecure&to=a@example.com",
    "rsyslog://127.0.0.1:{port}",
    "syslog://127.0.0.1:{port}",
    "apprise://127.0.0.1:{port}/x",
    "ntfy://127.0.0.1:{port}/topic",
    "ntfys://127.0.0.1:{port}/topic",
    "workflows://127.0.0.1:{port}/abcd/defg",
    "jsons://169.254.169.254/latest/meta-data/",
    "jsons://10.0.0.5:2375/containers/create",
]


@pytest.mark.parametrize("form", REFUSED_FORMS)
def test_a_refused_channel_is_not_saved_and_reaches_nothing(form, user, listener, production):
    url = form.format(port=listener.port)
    with pytest.raises(ChannelInvalid):
        channel_create(user=user, name="x", url=url)
    assert not NotificationChannel.objects.filter(user=user).exists()
    # A row saved before the policy existed is checked again when sent, and not sent.
    old = NotificationChannel(user=user, name="old", display="old")
    old.url = url
    old.save()
    assert channel_send(old, subject="s", body="b") is False
    assert listener.accepted == 0


def test_the_refusal_names_what_is_allowed(production):
    with pytest.raises(ChannelInvalid) as refused:
        channel_check("mailto://user:pw@mail.example.com")
    for scheme in ("ntfys://", "slack://", "discord://", "tgram://", "pover://", "jsons://"):
        assert scheme in str(refused.value)


@pytest.mark.parametrize(
    "option",
    ["cto=60", "rto=60", "verify=no", "redirect=yes", "retry=9", "wait=30", "method=GET", "attach=http://x/y",
     "%2BHost=internal"],
)
def test_server_overrides_are_refused(option):
    with pytest.raises(ChannelInvalid):
        channel_check(f"ntfys://ntfy.example.com/topic?{option}")


def test_dns_rebinding_between_save_and_send_reaches_nothing(user, listener, production, monkeypatch):
    """The name answers a public address when saved and 127.0.0.1 when sent: refused at connect."""
    monkeypatch.setattr(policy, "resolve", lambda host, port: [PUBLIC])
    channel = channel_create(user=user, name="Hook", url=f"jsons://hooks.example.test:{listener.port}/x")
    monkeypatch.setattr(policy, "resolve", lambda host, port: ["127.0.0.1"])
    assert channel_send(channel, subject="s", body="b") is False
    assert listener.accepted == 0


def test_pinned_connections_refuse_loopback_for_any_library_call(listener, production):
    with pinned_connections(), pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{listener.port}/", timeout=2)
    assert listener.accepted == 0


def test_outside_the_pin_urllib3_is_unchanged(listener, production):
    """The hook only acts inside `pinned_connections()` (other code is not affected)."""
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{listener.port}/", timeout=2)  # the listener hangs up
    assert listener.accepted == 1


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("ntfys://ntfy.example.com/alerts", "ntfy.example.com"),
        ("ntfy://alerts", "ntfy.sh"),
        ("https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7", "hooks.slack.com"),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7", "hooks.slack.com"),
        ("discord://123456/abcdef", "discord.com"),
        ("tgram://123456789:abcdefg_hijklmnop/12345", "api.telegram.org"),
        ("pover://" + "u" * 30 + "@" + "a" * 30, "api.pushover.net"),
        ("workflows://prod-1.westeurope.logic.azure.com:443/abcd/defg", "prod-1.westeurope.logic.azure.com"),
        ("jsons://hooks.example.com/brokerlink", "hooks.example.com"),
        ("forms://hooks.example.com/brokerlink", "hooks.example.com"),
    ],
)
def test_a_legitimate_https_channel_connects_to_the_checked_address(url, host, user, production, monkeypatch):
    """Every offered scheme sends through the pin. Without leaving the machine: the name is
    resolved by the policy (a public answer) and Apprise's connection goes to that checked
    address on 443, never resolved again by the library."""
    resolved, dialled = [], []

    def resolve(name, port):
        resolved.append(name)
        return [PUBLIC]

    def dial(address, *args, **kwargs):
        dialled.append(address)
        raise ConnectionRefusedError("intercepted by the test")

    monkeypatch.setattr(policy, "resolve", resolve)
    monkeypatch.setattr(clients, "_unpinned_create_connection", dial)
    channel = channel_create(user=user, name="Phone", url=url)
    assert channel_send(channel, subject="s", body="b") is False  # intercepted, so not delivered
    assert host in resolved
    assert dialled and all(address == (PUBLIC, 443) for address in dialled)


def test_a_json_channel_in_development_still_delivers(user, receiver):
    """Development mode (loopback http allowed): the real send, through the pinned path."""
    channel = channel_create(user=user, name="Webhook", url=receiver.url())
    assert channel_send(channel, subject="hello", body="world") is True
    assert receiver.titles() == ["hello"]


def test_no_channel_is_sent_through_a_proxy_from_the_environment(user, receiver, monkeypatch):
    channel = channel_create(user=user, name="Webhook", url=receiver.url())
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert channel_send(channel, subject="s", body="b") is False
    assert receiver.messages == []
