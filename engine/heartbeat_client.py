"""Concurrent heartbeat calls: one aiohttp session per lane (connections kept from batch to
batch), a bounded number of requests in flight overall and per broker, a timeout per request,
and every answer classified by connections.errors.

What a heartbeat guarantees (the same as outbound.clients for every other call):
- the outbound policy at connection time: the connector's resolver (outbound.resolver) resolves
  the host, checks every address and returns only checked ones; aiohttp opens the socket to one
  of them and never resolves the name another way (no DNS rebinding). The URL's form (scheme,
  user-info, IP literals) is checked once per batch before any request;
- no redirects (a 3xx is the answer), no proxies from the environment, no cookies;
- TLS verified against the system's CA store (aiohttp's default context), with SNI and
  hostname check;
- bounded: the whole exchange (connect, TLS, answer, body) within `timeout`; at most 1 MiB of
  body (after decompression), 100 headers and 64 KiB of header bytes; an answer over a limit
  fails that request alone and its connection is not reused;
- keep-alive: a kept connection that turns out closed when the GET is sent gets the GET (an
  idempotent request that spends no token) once more on a new connection, as aiohttp does
  for idempotent methods (RFC 9112 section 9.3.1).
Cost per request: docs/benchmarks.md#http-clients.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp

from connections import errors
from connections.errors import BrokerError, classify_response
from outbound.policy import OutboundRefused, url_target
from outbound.resolver import PolicyResolver, refused_by_resolver

USER_AGENT = "brokerlink-heartbeat/1.0"
MAX_BODY_BYTES = 1 << 20
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 << 10
# A connection idle longer than this is closed rather than reused: servers commonly drop idle
# keep-alive connections after 5-75 s, and a reused dead one costs a resend.
IDLE_SECONDS = 15.0
DNS_SECONDS = 300


class AnswerInvalid(Exception):
    """The answer is over one of brokerlink's limits or unreadable (the message says which)."""


@dataclass
class HeartbeatRequest:
    key: object
    url: str
    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret
    token_invalid_statuses: tuple[int, ...] = (401,)
    broker_name: str = "The broker"
    # Requests of one group (the broker slug) share a cap of their own (`per_group`).
    group: str = ""


@dataclass
class HeartbeatResult:
    key: object
    ok: bool
    latency_ms: int | None = None
    http_status: int | None = None
    error: BrokerError | None = None
    payload: object = field(default=None, repr=False)


def _auth_header(token_type: str, token: str) -> str:
    scheme = "Bearer" if not token_type or token_type.lower() == "bearer" else token_type
    return f"{scheme} {token}"


def _refused(req: HeartbeatRequest) -> BrokerError:
    return BrokerError(
        errors.CONFIGURATION,
        f"{req.broker_name}'s endpoint is not an address brokerlink may call (https to a public host only).",
    )


def _stored_token_problem(req: HeartbeatRequest) -> str:
    """Rows written before token answers were validated may hold values no header can carry."""
    from connections.tokens import TOKEN_PATTERN, TOKEN_TYPE_PATTERN

    if req.token_type and not TOKEN_TYPE_PATTERN.fullmatch(req.token_type):
        return "This connection's stored token type is malformed (control characters); reconnect to store new tokens."
    if not TOKEN_PATTERN.fullmatch(req.access_token or ""):
        return "This connection's stored access token is malformed; reconnect to store new tokens."
    return ""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop (pinned for uvicorn, the web server's loop) when installed: the same client
    costs less CPU per request on it than on the standard loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop still runs
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _network_failure(req: HeartbeatRequest, started: float, what: str) -> HeartbeatResult:
    latency = int((time.perf_counter() - started) * 1000)
    message = f"{req.broker_name} {what}"
    return HeartbeatResult(req.key, False, latency, error=BrokerError(errors.NETWORK, message))


def _head_checked(response: aiohttp.ClientResponse) -> None:
    """aiohttp bounds the number of header lines and each line's length; the total is ours."""
    if sum(len(name) + len(value) for name, value in response.raw_headers) > MAX_HEADER_BYTES:
        raise AnswerInvalid("the answer's headers are over brokerlink's limit")
    if (response.content_length or 0) > MAX_BODY_BYTES:
        raise AnswerInvalid("the answer is larger than brokerlink's 1 MiB limit")


async def _body(response: aiohttp.ClientResponse) -> bytes:
    """The body, at most MAX_BODY_BYTES of it after decompression."""
    if response.content_length is not None and "Content-Encoding" not in response.headers:
        return await response.read()  # bounded by its Content-Length, checked above
    body = bytearray()
    while chunk := await response.content.read(MAX_BODY_BYTES + 1 - len(body)):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise AnswerInvalid("the answer is larger than brokerlink's 1 MiB limit")
    return bytes(body)


async def _get(session: aiohttp.ClientSession, url: str, authorization: str):
    async with session.get(url, headers={"Authorization": authorization}, allow_redirects=False) as response:
        try:
            _head_checked(response)
            body = await _body(response)
        except AnswerInvalid:
            response.close()  # the rest of the answer is never read: the connection goes
            raise
        return response.status, response.headers, body


def _unreadable(exc: aiohttp.ClientResponseError) -> str:
    """aiohttp raises ClientResponseError (raise_for_status is off) only for an answer its
    parser refused; its message says which rule the answer broke."""
    message = str(getattr(exc, "message", "") or "").lower()
    if "header" in message or "got more than" in message:
        return "the answer's headers are over brokerlink's limit"
    return "not a valid HTTP answer"


async def _one(
    session: aiohttp.ClientSession,
    sem: asyncio.Semaphore,
    group_sem: asyncio.Semaphore,
    req: HeartbeatRequest,
    refused_urls: set[str],
) -> HeartbeatResult:
    if problem := _stored_token_problem(req):
        return HeartbeatResult(req.key, False, None, error=BrokerError(errors.UNEXPECTED, problem))
    if req.url in refused_urls:
        return HeartbeatResult(req.key, False, 0, error=_refused(req))
    async with group_sem, sem:
        started = time.perf_counter()
        try:
            status, headers, raw = await _get(session, req.url, _auth_header(req.token_type, req.access_token))
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            return _network_failure(req, started, "did not answer in time.")
        except AnswerInvalid as exc:  # its message is one of this module's own sentences
            return _network_failure(req, started, f"sent an answer brokerlink cannot read: {exc}.")
        except aiohttp.ClientResponseError as exc:
            return _network_failure(req, started, f"sent an answer brokerlink cannot read: {_unreadable(exc)}.")
        except aiohttp.ClientPayloadError as exc:  # the body: cut short, or not decodable
            if "content-encoding" in str(exc).lower():
                return _network_failure(
                    req, started, "sent an answer brokerlink cannot read: the answer's compressed body is corrupt."
                )
            return _network_failure(req, started, "closed the connection before its answer was complete.")
        except aiohttp.ServerDisconnectedError:  # no (complete) head, also after aiohttp's one resend
            return _network_failure(req, started, "closed the connection before its answer was complete.")
        except aiohttp.InvalidURL:  # e.g. a legacy numeric IPv4 host, which aiohttp refuses
            return HeartbeatResult(req.key, False, 0, error=_refused(req))
        except aiohttp.ClientConnectorError as exc:  # refused, unreachable, TLS verification
            if refused_by_resolver(exc):
                return HeartbeatResult(req.key, False, 0, error=_refused(req))
            return _network_failure(req, started, f"could not be reached ({type(exc.os_error).__name__}).")
        except OSError as exc:  # a reset or other socket error after connecting
            return _network_failure(req, started, f"could not be reached ({type(exc).__name__}).")
        except Exception as exc:  # noqa: BLE001 - one request's surprise must not sink the batch
            message = f"brokerlink could not send the check to {req.broker_name} ({type(exc).__name__})."
            return HeartbeatResult(req.key, False, None, error=BrokerError(errors.UNEXPECTED, message))
        latency = int((time.perf_counter() - started) * 1000)
    body = None
    if raw:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
    error = classify_response(
        status=status,
        content_type=headers.get("Content-Type", ""),
        body=body,
        # Only an answer that is not a success is classified by its headers (Retry-After).
        headers=None if 200 <= status < 300 else headers,
        during="account",
        token_invalid_statuses=req.token_invalid_statuses,
        broker_name=req.broker_name,
    )
    return HeartbeatResult(req.key, error is None, latency, status, error, body)


def _session(concurrency: int, timeout: float) -> aiohttp.ClientSession:
    """One lane's session: its connector holds at most `concurrency` connections (the lane's
    requests in flight; the per-broker share is the callers' semaphores, since a broker is a
    group of URLs, not one host), kept `IDLE_SECONDS`, resolved by the policy's resolver."""
    connector = aiohttp.TCPConnector(
        resolver=PolicyResolver(),
        limit=max(1, concurrency),
        ttl_dns_cache=DNS_SECONDS,
        keepalive_timeout=IDLE_SECONDS,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
        # The wire stays what a heartbeat needs: no Accept-Encoding (a compressed answer is
        # still decoded, within the body limit), no cookie jar, no proxy from the environment.
        skip_auto_headers=("Accept-Encoding",),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        max_headers=MAX_HEADERS,
    )


def _url_refused(url: str) -> bool:
    try:
        url_target(url)  # form only; the connector's resolver checks the addresses
    except OutboundRefused:
        return True
    return False


async def _gather(
    session: aiohttp.ClientSession, items: list[HeartbeatRequest], *, concurrency: int, per_group: int | None
) -> list[HeartbeatResult]:
    sem = asyncio.Semaphore(max(1, concurrency))
    group_cap = max(1, min(per_group or concurrency, concurrency))
    group_sems = {group: asyncio.Semaphore(group_cap) for group in {item.group for item in items}}
    # Every connection of a broker calls the same URL: its form is checked once per batch (not
    # cached longer, so a policy change applies from the next batch).
    refused_urls = {url for url in {item.url for item in items} if _url_refused(url)}
    calls = (_one(session, sem, group_sems[item.group], item, refused_urls) for item in items)
    return list(await asyncio.gather(*calls))


async def heartbeats_run_async(
    items: list[HeartbeatRequest], *, concurrency: int = 200, timeout: float = 10.0, per_group: int | None = None
) -> list[HeartbeatResult]:
    """At most `concurrency` requests in flight, and at most `per_group` of one group (broker)
    among them, so a broker's share of a cluster's requests is bounded by lanes × per_group."""
    if not items:
        return []
    async with _session(concurrency, timeout) as session:
        return await _gather(session, items, concurrency=concurrency, per_group=per_group)


class _KeptSession:
    """One event loop and one aiohttp session for all the batches of a sweep (a lane):
    keep-alive connections to a broker are reused from batch to batch instead of opened again
    for each."""

    def __init__(self) -> None:
        self.loop = new_event_loop()
        self.session: aiohttp.ClientSession | None = None
        self.params: tuple[int, float] | None = None

    def run(self, items, *, concurrency: int, timeout: float, per_group: int | None) -> list[HeartbeatResult]:
        return self.loop.run_until_complete(self._run(items, concurrency, timeout, per_group))

    async def _run(self, items, concurrency, timeout, per_group):
        if self.params != (concurrency, timeout):
            if self.session is not None:
                await self.session.close()
            self.session, self.params = _session(concurrency, timeout), (concurrency, timeout)
        return await _gather(self.session, items, concurrency=concurrency, per_group=per_group)

    def close(self) -> None:
        try:
            if self.session is not None:
                self.loop.run_until_complete(self.session.close())
        finally:
            self.loop.close()


_kept = threading.local()


@contextmanager
def session_kept():
    """Within this block, heartbeats_run on this thread shares one session (a sweep's batches)."""
    if getattr(_kept, "session", None) is not None:
        yield
        return
    _kept.session = _KeptSession()
    try:
        yield
    finally:
        kept, _kept.session = _kept.session, None
        kept.close()


def heartbeats_run(
    items: list[HeartbeatRequest], *, concurrency: int = 200, timeout: float = 10.0, per_group: int | None = None
) -> list[HeartbeatResult]:
    """Run a batch of heartbeats from synchronous code (a Celery task, a view)."""
    if not items:
        return []
    kept = getattr(_kept, "session", None)
    if kept is not None:
        return kept.run(items, concurrency=concurrency, timeout=timeout, per_group=per_group)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(heartbeats_run_async(items, concurrency=concurrency, timeout=timeout, per_group=per_group))
