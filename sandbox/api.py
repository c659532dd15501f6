"""The Sandbox Broker's surface for brokerlink's side of the wire: the only sandbox module that
accounts/, brokers/, connections/ and ops/ may import.

brokerlink itself talks to the sandbox over HTTP, like to any broker, through its profile
(brokers/profiles/sandbox.py) and the JSON control API (`/control/api/…`, see docs/sandbox.md).
These functions are the in-process equivalents of two control-API calls, for the demo seeding
that runs before any server is up: `POST /control/api/users {"demo": true}` and
`POST /control/api/clients`. Everything else in sandbox/ is the server's own business.
"""

from __future__ import annotations

from sandbox import services
from sandbox.models import SandboxClient

DEMO_USERNAME = services.DEMO_USERNAME
DEMO_PASSWORD = services.DEMO_PASSWORD


def demo_user_ensure() -> str:
    """The sandbox's demo login with its two paper accounts; returns its username. Safe to run twice."""
    return services.sandbox_demo_user_ensure().username


def client_ensure(client_id: str | None, *, name: str, redirect_uri: str, emulate: str = "sandbox") -> dict | None:
    """Make sure the OAuth client `client_id` exists and redirects to `redirect_uri`.

    Returns `{"client_id", "client_secret"}` when a new client had to be created (none given, or
    it no longer exists), None when the existing one was kept (its redirect URI re-pointed if
    needed)."""
    client = SandboxClient.objects.filter(client_id=client_id).first() if client_id else None
    if client is None:
        client = services.client_create(name=name, redirect_uris=[redirect_uri], emulate=emulate)
        return {"client_id": client.client_id, "client_secret": client.client_secret}
    if redirect_uri not in client.redirect_uris.split():
        client.redirect_uris = redirect_uri
        client.save(update_fields=["redirect_uris"])
    return None
