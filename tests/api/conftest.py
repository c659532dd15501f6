import glob
import os
from datetime import timedelta

import pytest
import requests
from django.conf import settings
from django.utils import timezone

from api.models import Scope
from api.services import service_key_create
from connections.models import Connection
from tests.fixtures.browser import chromium, page  # noqa: F401 - fixtures for the docs page test
from tests.harness import Browser

PASSWORD = "correct horse battery"
ALL_SCOPES = [Scope.READ_STATUS, Scope.CALL, Scope.READ_TOKENS]


class ApiClient:
    """A service outside brokerlink: plain HTTP with its service key."""

    def __init__(self, base_url: str, key: str):
        self.base_url = base_url
        self.key = key

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.base_url}/api/v1/{path.lstrip('/')}", headers=headers, timeout=30,
                                **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def sandbox_app(stack):
    return stack.broker_app("sandbox", rotate_refresh=True)


@pytest.fixture
def connection(stack, sandbox_app, user) -> Connection:
    """A real connection: the user connected the sandbox broker through brokerlink's pages."""
    browser = Browser(stack)
    browser.login(user.email, PASSWORD)
    browser.connect()
    return Connection.objects.get(user=user)


@pytest.fixture
def api_client(stack):
    """make(scopes=..., **key_fields) -> an ApiClient holding a new service key."""

    def make(scopes=ALL_SCOPES, **fields):
        # A key made by brokerlink's own code for every user's connections; tokens:read and
        # broker:call need an expiry (api.services).
        fields.setdefault("all_users", not fields.get("users"))
        fields.setdefault("expires_at", timezone.now() + timedelta(days=1))
        key, plaintext = service_key_create(name=fields.pop("name", "trading-system"), scopes=scopes, **fields)
        client = ApiClient(stack.url, plaintext)
        client.service_key = key
        return client

    return make


def expire_at_the_broker(sandbox, client_id: str) -> None:
    """The sandbox (sharing the test database) lets every access token it issued expire;
    brokerlink still believes them valid."""
    from sandbox.models import SandboxToken

    SandboxToken.objects.filter(client__client_id=client_id).update(
        access_expires_at=timezone.now() - timedelta(seconds=1)
    )
    sandbox.set_faults(client_id, latency_ms=0)  # any control call drops the server's token lookup cache


def server_log_text() -> str:
    """Everything the brokerlink server processes of this run wrote to their logs."""
    paths = glob.glob(os.path.join(str(settings.VAR_DIR), "test-logs", "app-*.log"))
    return "".join(open(p, errors="replace").read() for p in paths)
