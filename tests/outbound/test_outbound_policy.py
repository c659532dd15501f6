"""Security finding 3: one outbound-URL policy for every URL brokerlink calls that someone typed.

Fake brokers and receivers listen on 127.0.0.1; a hostile resolver is played by replacing
outbound.policy.resolve (the only place brokerlink resolves names).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.urls import reverse

from brokers.custom import BrokerSpecError, resolve_spec
from brokers.discovery import DISCOVERY_FAILED
from brokers.profile import BrokerProfile, TokenRules
from connections import broker_client
from connections.errors import CONFIGURATION, BrokerError
from engine.heartbeat_client import HeartbeatRequest, heartbeats_run
from ops.models import WebhookDelivery, WebhookEndpoint
from ops.webhooks import webhook_deliver
from outbound import policy
from tests.support import free_port, with_second_factor

SECRET = "whsec-test-0123456789abcdef"
PROFILE = BrokerProfile(slug="acme", name="Acme", authorize_url="", token_url="", api_base_urls={},
                        heartbeat_path="/", token_rules=TokenRules())


class FakeServer:
    """Answers every request with `status` and `headers`, counting what it received."""

    def __init__(self, status: int, headers: dict | None = None, body: bytes = b'{"id": "acct-1"}'):
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                server.hits.append(self.path)
                self.send_response(status if self.path != "/landing" else 200)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server():
    servers = []

    def start(*args, **kwargs):
        servers.append(FakeServer(*args, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def hostile_resolver(monkeypatch):
    """Names under .test resolve where the test says; everything else as usual."""
    answers: dict[str, list[str]] = {}
    real = policy.resolve

    def resolve(host, port):
        return answers[host] if host in answers else real(host, port)

    monkeypatch.setattr(policy, "resolve", resolve)
    return answers


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3:6379/",
        "https://10.1.2.3/",
        "https://100.64.0.1/",
        "https://[fe80::1]/",
        "https://224.0.0.1/",
        "https://[::ffff:10.0.0.1]/",
        "http://host:1\\@127.0.0.1/",
        "https://user:pw@broker.example/",
        "http://broker.example/",
    ],
)
def test_refused_urls(url):
    assert policy.outbound_url_problem(url, resolve_host=False) is not None


def test_loopback_http_needs_the_development_switch(settings):
    assert policy.outbound_url_problem("http://127.0.0.1:9100/sandbox", resolve_host=False) is None
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = False
    assert policy.outbound_url_problem("http://127.0.0.1:9100/sandbox", resolve_host=False) is not None
    assert policy.outbound_url_problem("https://127.0.0.1/", resolve_host=False) is not None


@pytest.mark.django_db
def test_admin_custom_broker_refuses_a_host_resolving_to_a_private_address(client, django_user_model, hostile_resolver):
    hostile_resolver["auth.evil.test"] = ["10.1.2.3"]
    hostile_resolver["api.evil.test"] = ["93.184.215.14", "169.254.169.254"]
    root = django_user_model.objects.create_superuser(email="root@example.com", password="x" * 12)
    with_second_factor(root)
    client.force_login(root)
    response = client.post(reverse("admin:brokers_custombroker_add"), {
        "slug": "evil", "name": "Evil", "authorize_url": "https://auth.evil.test/a",
        "token_url": "https://auth.evil.test/t", "api_base_url": "https://api.evil.test",
        "heartbeat_path": "/", "token_auth_method": "client_secret_basic", "revocation_scope": "none",
        "scope_separator": " ", "enabled": "on",
    })
    assert response.status_code == 200  # the form again, with errors
    body = response.content.decode()
    assert body.count(policy.GENERIC) >= 2
    assert "10.1.2.3" not in body and "169.254" not in body


@pytest.mark.django_db
def test_discovery_never_follows_a_redirect_and_errors_are_generic(fake_server):
    redirecting = fake_server(302, {"Location": "http://169.254.169.254/latest/meta-data/"})
    missing = fake_server(404)
    closed = f"http://127.0.0.1:{free_port()}"
    messages = []
    for root in (redirecting.root, missing.root, closed):
        with pytest.raises(BrokerSpecError) as info:
            resolve_spec("x", {"discovery_url": f"{root}/.well-known/oauth-authorization-server",
                               "api_base_url": "https://api.broker.example"})
        messages.append(info.value.problems)
    expected = f"{DISCOVERY_FAILED} (retried in the background)"
    assert messages == [[("discovery_url", expected)]] * 3  # no port scanner
    assert redirecting.hits == ["/.well-known/oauth-authorization-server"]


def test_broker_call_checks_the_address_at_connection_time(hostile_resolver, settings):
    """Validated when saved, rebound since: the client refuses before connecting."""
    hostile_resolver["rebound.test"] = ["127.0.0.1"]
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = False
    with pytest.raises(BrokerError) as info:
        broker_client.broker_call(PROFILE, "GET", "https://rebound.test/v1/me", during="account")
    assert info.value.category == CONFIGURATION
    assert "not an address brokerlink may call" in info.value.message


def test_production_refuses_plain_http_even_to_loopback(settings, fake_server):
    server = fake_server(200)
    settings.OUTBOUND_ALLOW_LOOPBACK_HTTP = False
    with pytest.raises(BrokerError) as info:
        broker_client.broker_call(PROFILE, "POST", f"{server.root}/t", during="token", data={"client_secret": "s"})
    assert info.value.category == CONFIGURATION
    assert server.hits == []


def test_a_redirecting_heartbeat_is_an_error_not_connected(fake_server):
    broker = fake_server(302, {"Location": "/landing"})
    (result,) = heartbeats_run([HeartbeatRequest(key=1, url=f"{broker.root}/v1/account", access_token="t")])
    assert not result.ok and result.http_status == 302
    assert "redirect" in result.error.message
    assert broker.hits == ["/v1/account"]  # /landing never requested


def test_heartbeat_resolver_refuses_private_addresses(hostile_resolver):
    hostile_resolver["heartbeat.test"] = ["10.9.8.7"]
    (result,) = heartbeats_run([HeartbeatRequest(key=1, url="https://heartbeat.test/v1/account", access_token="t")],
                               timeout=3)
    assert not result.ok and result.error.category == CONFIGURATION


@pytest.mark.django_db(transaction=True)
def test_webhook_admin_and_delivery_refuse_private_targets(client, django_user_model, hostile_resolver):
    root = django_user_model.objects.create_superuser(email="root@example.com", password="x" * 12)
    with_second_factor(root)
    client.force_login(root)
    response = client.post(reverse("admin:ops_webhookendpoint_add"), {
        "name": "Redis", "url": "http://10.1.2.3:6379/", "enabled": "on", "new_secret": SECRET,
        "deliveries-TOTAL_FORMS": "0", "deliveries-INITIAL_FORMS": "0",
    })
    assert response.status_code == 200 and not WebhookEndpoint.objects.exists()
    # Saved while it resolved publicly, rebound to the metadata service since.
    endpoint = WebhookEndpoint(name="CRM", url="https://hooks.test/in")
    endpoint.secret = SECRET
    endpoint.save()
    hostile_resolver["hooks.test"] = ["169.254.169.254"]
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event="failed", payload={"id": "1"})
    webhook_deliver(delivery.pk)
    delivery.refresh_from_db()
    assert "not allowed" in delivery.last_error and delivery.response_status is None
