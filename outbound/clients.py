"""HTTP clients that enforce outbound.policy at connection time, with the checked address pinned.

The URL was checked when it was saved, but DNS can answer differently a minute later
(rebinding). So the clients resolve the host themselves, check every address, and connect
to an address they checked, never letting the library resolve the name again:

- `outbound_session()`: a requests Session whose connection pools open sockets through
  `_new_conn` below; proxies and .netrc from the environment are ignored (a proxy would
  connect on our behalf to anything).
- the heartbeat's aiohttp client (engine.heartbeat_client) resolves through
  `outbound.resolver.PolicyResolver`, which checks the same way (`allowed_addresses`) and
  returns only checked addresses, the ones aiohttp connects to.

None follows redirects: callers pass allow_redirects=False and treat 3xx as an error.
"""

from __future__ import annotations

import contextlib
import contextvars
import socket

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError
from urllib3.util import connection as urllib3_connection

from outbound.policy import OutboundRefused, allowed_addresses, url_target


class OutboundBlocked(NewConnectionError):
    """urllib3's view of a policy refusal at connection time."""


def refused_by_policy(exc: BaseException | None) -> bool:
    """True when a requests exception (or its causes) is the policy refusing the address."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, (OutboundRefused, OutboundBlocked)):
            return True
        reason = getattr(exc, "reason", None) or getattr(exc, "os_error", None)
        if isinstance(reason, OutboundBlocked):
            return True
        args = getattr(exc, "args", ())
        if args and isinstance(args[0], BaseException) and refused_by_policy(args[0]):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class _PinnedMixin:
    def _new_conn(self) -> socket.socket:
        try:
            addresses = allowed_addresses(self._dns_host, self.port)
        except OutboundRefused as refused:
            raise OutboundBlocked(self, f"refused by the outbound-URL policy: {refused.message}") from None
        last_error: OSError | None = None
        for address in addresses:
            try:
                return _unpinned_create_connection(
                    (address, self.port), self.timeout, source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                last_error = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {last_error}")


class PinnedHTTPConnection(_PinnedMixin, HTTPConnection):
    pass


class PinnedHTTPSConnection(_PinnedMixin, HTTPSConnection):
    pass


class PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = PinnedHTTPConnection


class PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = PinnedHTTPSConnection


class OutboundAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": PinnedHTTPConnectionPool, "https": PinnedHTTPSConnectionPool}

    def send(self, request, *args, **kwargs):
        url_target(request.url)  # scheme, user-info, parser agreement, literal addresses
        return super().send(request, *args, **kwargs)


class OutboundSession(requests.Session):
    """Never follows a redirect, whatever the caller passes: a 3xx comes back as the answer."""

    def request(self, method, url, *args, **kwargs):
        kwargs["allow_redirects"] = False
        return super().request(method, url, *args, **kwargs)


def outbound_session() -> requests.Session:
    session = OutboundSession()
    session.trust_env = False
    adapter = OutboundAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# Libraries that open their own requests sessions (Apprise calls `requests.post` itself and
# offers no way to pass a session) still open every socket through urllib3's public
# `util.connection.create_connection`. Inside `pinned_connections()` that function resolves
# the host itself, checks every address against the policy, and connects to a checked
# address; outside it, it is urllib3's own. A context variable (not a global switch) keeps
# the pin to the calling thread, so the caller must not hand the work to another thread.
_PINNED: contextvars.ContextVar[bool] = contextvars.ContextVar("outbound_pinned", default=False)
_unpinned_create_connection = urllib3_connection.create_connection


class PinRefused(ConnectionRefusedError):
    """Raised inside urllib3 so the library reports an ordinary connection failure."""


def _policy_create_connection(address, *args, **kwargs):
    if not _PINNED.get():
        return _unpinned_create_connection(address, *args, **kwargs)
    host, port = address[0], address[1]
    try:
        addresses = allowed_addresses(str(host).strip("[]"), int(port))
    except OutboundRefused:
        raise PinRefused("refused by the outbound-URL policy") from None
    last_error: OSError | None = None
    for checked in addresses:
        try:
            return _unpinned_create_connection((checked, port), *args, **kwargs)
        except OSError as exc:
            last_error = exc
    raise last_error or PinRefused("no address to connect to")


urllib3_connection.create_connection = _policy_create_connection


@contextlib.contextmanager
def pinned_connections():
    """Every urllib3 connection opened in this block obeys the policy, pinned to a checked address."""
    token = _PINNED.set(True)
    try:
        yield
    finally:
        _PINNED.reset(token)
