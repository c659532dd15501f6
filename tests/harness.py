"""A brokerlink server with the sandbox mounted, and a browser-like client for it.

server = BrokerlinkServer.start(...)                  # uvicorn on a free port (module scope)
browser = Browser(server); browser.login(email, password)
response = browser.connect("sandbox")                 # catalog button -> sandbox login/consent -> callback
"""

from __future__ import annotations

import html
import re
from contextlib import ExitStack
from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from brokers.models import BrokerApp
from tests.fixtures.sandbox import CONTROL_TOKEN, DEMO_PASSWORD, DEMO_USERNAME, SandboxServer
from tests.support import PYTHON, free_port, running, subprocess_env

TIMEOUT = 30


def csrf_from(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "no CSRF token in the form"
    return match.group(1)


class BrokerlinkServer:
    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.sandbox = SandboxServer(port)
        self.sandbox.url = f"{self.url}/sandbox"  # the sandbox mounted in the app, same control API
        self._stack = ExitStack()

    @classmethod
    def start(cls, **env: str) -> BrokerlinkServer:
        server = cls(free_port())
        environment = subprocess_env(
            DJANGO_SETTINGS_MODULE="tests.connections.server_settings",
            SITE_URL=server.url,
            PORT=str(server.port),
            SANDBOX_BASE_URL=server.sandbox.url,
            SANDBOX_CONTROL_TOKEN=CONTROL_TOKEN,
            **env,
        )
        cmd = [PYTHON, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(server.port)]
        server._stack.enter_context(
            running(
                [*cmd, "--log-level", "warning"], env=environment, ready_url=f"{server.url}/health/", log_name="app"
            )
        )
        return server

    def stop(self) -> None:
        self._stack.close()

    def callback_uri(self, slug: str) -> str:
        return f"{self.url}/connections/callback/{slug}/"

    def broker_app(
        self, slug: str = "sandbox", *, environment: str = "paper", **client_fields
    ) -> tuple[BrokerApp, dict]:
        """A sandbox OAuth client plus the BrokerApp row that uses it (committed: the server reads it)."""
        client = self.sandbox.create_client(
            redirect_uris=[self.callback_uri(slug)], name=f"brokerlink {slug}", **client_fields
        )
        app = BrokerApp(broker_slug=slug, environment=environment, client_id=client["client_id"])
        app.client_secret = client.get("client_secret", "")
        app.save()
        return app, client


@dataclass
class Hop:
    """Where the sandbox sent the browser back: the callback URL and its parameters."""

    location: str

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}


class Browser:
    """A requests.Session behaving like a person's browser across brokerlink and the sandbox."""

    def __init__(self, server: BrokerlinkServer):
        self.server = server
        self.session = requests.Session()

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(urljoin(self.server.url, path), timeout=TIMEOUT, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs) -> requests.Response:
        token = self.session.cookies.get("csrftoken")
        if token is None:
            self.get("/accounts/login/")
            token = self.session.cookies.get("csrftoken")
        return self.session.post(
            urljoin(self.server.url, path),
            data={"csrfmiddlewaretoken": token, **(data or {})},
            timeout=TIMEOUT,
            **kwargs,
        )

    def login(self, email: str, password: str) -> None:
        page = self.get("/accounts/login/")
        response = self.session.post(
            f"{self.server.url}/accounts/login/",
            data={"csrfmiddlewaretoken": csrf_from(page.text), "login": email, "password": password},
            allow_redirects=False,
            timeout=TIMEOUT,
        )
        assert response.status_code == 302, f"brokerlink login failed: {response.status_code}"

    def authorize(
        self,
        path: str,
        *,
        decision: str = "approve",
        account_label: str | None = None,
        username: str = DEMO_USERNAME,
        password: str = DEMO_PASSWORD,
    ) -> Hop:
        """Press a Connect/Reconnect button, sign in at the sandbox if asked, answer the consent page.

        Returns the redirect back to brokerlink without following it.
        """
        start = self.post(path, allow_redirects=False)
        assert start.status_code == 302, f"{path} answered {start.status_code}: {start.text[:300]}"
        url = start.headers["Location"]
        assert url.startswith(self.server.sandbox.url), url
        response = self.session.get(url, allow_redirects=False, timeout=TIMEOUT)
        if response.status_code == 302 and "/login/" in response.headers["Location"]:
            login_url = urljoin(url, response.headers["Location"])
            page = self.session.get(login_url, timeout=TIMEOUT)
            signed_in = self.session.post(
                login_url,
                data={
                    "csrfmiddlewaretoken": csrf_from(page.text),
                    "username": username,
                    "password": password,
                    "next": parse_qs(urlsplit(login_url).query)["next"][0],
                },
                allow_redirects=False,
                timeout=TIMEOUT,
            )
            assert signed_in.status_code == 302, f"sandbox login failed: {signed_in.status_code}"
            response = self.session.get(
                urljoin(url, signed_in.headers["Location"]), allow_redirects=False, timeout=TIMEOUT
            )
        assert response.status_code == 200, f"sandbox consent page: {response.status_code} {response.text[:300]}"
        form = {"csrfmiddlewaretoken": csrf_from(response.text), "decision": decision}
        accounts = {
            html.unescape(label).strip(): value
            for value, label in re.findall(r'name="account" value="(\d+)"[^>]*>\s*([^<]+?)\s*</label>', response.text)
        }
        if accounts:
            form["account"] = accounts[account_label] if account_label else next(iter(accounts.values()))
        answer = self.session.post(url, data=form, allow_redirects=False, timeout=TIMEOUT)
        assert answer.status_code == 302, f"sandbox consent answered {answer.status_code}"
        location = answer.headers["Location"]
        assert location.startswith(self.server.url + "/connections/callback/"), location
        return Hop(location)

    def follow(self, url: str) -> requests.Response:
        return self.session.get(url, timeout=TIMEOUT)

    def connect(self, slug: str = "sandbox", **kwargs) -> requests.Response:
        return self.follow(self.authorize(f"/connections/connect/{slug}/", **kwargs).location)

    def reconnect(self, connection_id, **kwargs) -> requests.Response:
        return self.follow(self.authorize(f"/connections/{connection_id}/reconnect/", **kwargs).location)

    def disconnect(self, connection_id) -> requests.Response:
        return self.post(f"/connections/{connection_id}/disconnect/")
