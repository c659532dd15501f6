"""The heartbeat's HTTP/1.1 client: keep-alive GETs with one Authorization header, small answers.

Why not aiohttp here: a heartbeat is one GET per connection per minute, and aiohttp's
per-request machinery (request/response objects, cookie jar, timers, header multidicts) cost
0.100 ms of CPU per request on this hardware, against 0.026 ms for this client on the same
endpoint and loop (docs/benchmarks.md): a quarter of a whole check's budget, and the largest
single cost of a sweep. Parsing is httptools (llhttp, the parser uvicorn serves with); this
module only keeps connections, writes the request and enforces limits. Every other call to a
broker (tokens, revocation, discovery, the account API) keeps using requests or aiohttp.

What it guarantees, like outbound.clients:
- the outbound policy at connection time: the host is resolved here, every address checked
  (`allowed_addresses`) and the socket opened to a checked address, never re-resolved;
- no redirects (a 3xx is returned as the answer), no proxies, no cookies;
- TLS verified against the system's CA store, with SNI and hostname check;
- bounded: the whole exchange (connect, TLS, answer) within `timeout`, at most 1 MiB of body,
  100 headers and 64 KiB of header bytes; an answer over a limit fails that request alone;
- a kept connection the server closed while idle is detected before anything was read and the
  GET (idempotent, no token is spent by it) is sent once more on a new connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import zlib
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httptools

from outbound.policy import allowed_addresses, url_target

MAX_BODY_BYTES = 1 << 20
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 << 10
# A connection idle longer than this is closed rather than reused: servers commonly drop idle
# keep-alive connections after 5-75 s, and a reused dead one costs a resend.
IDLE_SECONDS = 15.0
DNS_SECONDS = 300.0


class AnswerInvalid(Exception):
    """The server's bytes are not an HTTP/1.x answer within the limits (the message says which)."""


class ClosedMidAnswer(ConnectionError):
    """The server closed the connection before the answer was complete."""


class _Stale(ConnectionError):
    """A kept connection turned out closed before any byte of the answer arrived."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    request_target: str
    host_header: str

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


def target_of(url: str) -> Target:
    """The URL's form checked by the policy (raises OutboundRefused) and split for the wire.
    Not cached: the caller checks each distinct URL once per batch, so a policy change (the
    loopback switch, a URL an admin edited) applies from the next batch."""
    checked = url_target(url)
    split = urlsplit(url)
    path = quote(split.path or "/", safe="/:@!$&'()*+,;=%~-._")
    if split.query:
        path += "?" + quote(split.query, safe="/:@!$&'()*+,;=%~-._?")
    host = checked.host
    wire_host = f"[{host}]" if ":" in host else host.encode("idna").decode("ascii")
    default_port = 443 if checked.scheme == "https" else 80
    host_header = wire_host if checked.port == default_port else f"{wire_host}:{checked.port}"
    return Target(checked.scheme, host, checked.port, path, host_header)


class _Exchange(asyncio.Protocol):
    """One connection: at most one request in flight, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.waiter: asyncio.Future | None = None
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: dict[str, str] = {}
        self.header_count = 0
        self.header_bytes = 0
        self.headers_done = False
        self.body = bytearray()
        self.received = False
        self.unsolicited = False
        self.keep_alive = False
        self.problem: Exception | None = None

    # --- asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.transport.abort()  # bytes nobody asked for: this connection can't be trusted
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(AnswerInvalid("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(self.problem or AnswerInvalid(f"not a valid HTTP answer ({type(exc).__name__})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if (
            self.headers_done
            and "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "")
        ):
            self._complete()  # an answer delimited by the end of the connection (RFC 9112 §6.3)
        elif not self.received:
            waiter.set_exception(_Stale("closed before answering"))
        else:
            waiter.set_exception(ClosedMidAnswer("the connection closed in the middle of the answer"))

    # --- httptools callbacks
    def on_message_begin(self) -> None:
        if self.waiter is not None and self.waiter.done():
            # A second answer after ours, in the same bytes: nobody asked for it, so the
            # connection is not reused (its next answer could be this one).
            self.keep_alive = False
            self.unsolicited = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.unsolicited:
            return
        self.header_count += 1
        self.header_bytes += len(name) + len(value)
        if self.header_count > MAX_HEADERS or self.header_bytes > MAX_HEADER_BYTES:
            self.problem = AnswerInvalid("the answer's headers are over brokerlink's limit")
            raise self.problem
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if self.unsolicited:
            return
        if len(self.body) + len(body) > MAX_BODY_BYTES:
            self.problem = AnswerInvalid("the answer is larger than brokerlink's 1 MiB limit")
            raise self.problem
        self.body += body

    def on_message_complete(self) -> None:
        if self.unsolicited:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (103 Early Hints): the real one follows
            self.headers, self.header_count, self.header_bytes, self.headers_done = {}, 0, 0, False
            self.body = bytearray()
            return
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message ends
        self._complete()

    # --- internals
    def _complete(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        try:
            body = _decoded(bytes(self.body), self.headers.get("content-encoding", ""))
        except AnswerInvalid as exc:
            waiter.set_exception(exc)
            return
        waiter.set_result(Answer(self.parser.get_status_code(), dict(self.headers), body))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.transport.abort()

    def send(self, raw: bytes) -> asyncio.Future:
        self._reset()
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self.waiter

    @property
    def reusable(self) -> bool:
        return not self.closed and self.keep_alive and not self.unsolicited


def _decoded(body: bytes, encoding: str) -> bytes:
    """No Accept-Encoding is sent, but a server may compress anyway: gzip and deflate are undone
    within the body limit; anything else is passed on as is (the JSON check then fails)."""
    encoding = encoding.strip().lower()
    if encoding not in ("gzip", "x-gzip", "deflate") or not body:
        return body
    wbits = 31 if "gzip" in encoding else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(wbits)
        out = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error:
        if encoding != "deflate":
            raise AnswerInvalid("the answer's gzip body is corrupt") from None
        try:  # "deflate" without the zlib wrapper, as some servers send it
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            out = inflater.decompress(body, MAX_BODY_BYTES + 1)
        except zlib.error:
            raise AnswerInvalid("the answer's deflate body is corrupt") from None
    if len(out) > MAX_BODY_BYTES:
        raise AnswerInvalid("the answer is larger than brokerlink's 1 MiB limit")
    return out


class HeartbeatHttp:
    """Kept connections per (scheme, host, port), on the loop that uses it. Not thread-safe; the
    number of connections open is bounded by the callers' semaphores (requests in flight)."""

    def __init__(self, *, timeout: float, user_agent: str, accept: str = "application/json") -> None:
        self.timeout = timeout
        self._fixed = f"User-Agent: {user_agent}\r\nAccept: {accept}\r\n".encode("latin-1")
        self._idle: dict[tuple, deque[_Exchange]] = {}
        self._addresses: dict[tuple, tuple[float, list[str]]] = {}
        self._tls: ssl.SSLContext | None = None
        self._open: set[_Exchange] = set()

    async def get(self, target: Target, authorization: str) -> Answer:
        raw = (
            (
                f"GET {target.request_target} HTTP/1.1\r\nHost: {target.host_header}\r\n"
                f"Authorization: {authorization}\r\n"
            ).encode("latin-1")
            + self._fixed
            + b"\r\n"
        )
        async with asyncio.timeout(self.timeout):
            conn = self._kept(target.key)
            if conn is not None:
                try:
                    return await self._exchange(target.key, conn, raw)
                except _Stale:
                    pass  # closed while idle; the GET is resent once on a new connection
            conn = await self._connect(target)
            try:
                return await self._exchange(target.key, conn, raw)
            except _Stale:
                raise ClosedMidAnswer("the server closed the connection without answering") from None

    def _kept(self, key) -> _Exchange | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                return conn
            self._drop(conn)
        return None

    async def _exchange(self, key, conn: _Exchange, raw: bytes) -> Answer:
        done = False
        try:
            answer = await conn.send(raw)
            done = True
        finally:
            if not done:
                self._drop(conn)  # cancelled (timeout) or failed: never reused
        if conn.reusable:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(key, deque()).append(conn)
        else:
            self._drop(conn)
        return answer

    def _drop(self, conn: _Exchange) -> None:
        self._open.discard(conn)
        if conn.transport is not None and not conn.closed:
            conn.transport.abort()

    async def _resolve(self, host: str, port: int) -> list[str]:
        key, now = (host, port), time.monotonic()
        cached = self._addresses.get(key)
        if cached and cached[0] > now:
            return cached[1]
        loop = asyncio.get_running_loop()
        addresses = await loop.run_in_executor(None, allowed_addresses, host, port)  # raises OutboundRefused
        self._addresses[key] = (now + DNS_SECONDS, addresses)
        return addresses

    async def _connect(self, target: Target) -> _Exchange:
        addresses = await self._resolve(target.host, target.port)
        tls = None
        if target.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        loop = asyncio.get_running_loop()
        last: OSError | None = None
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    _Exchange,
                    address,
                    target.port,
                    ssl=tls,
                    server_hostname=target.host if tls else None,
                    family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                )
            except OSError as exc:
                last = exc
                continue
            self._open.add(conn)
            return conn
        raise last or ConnectionError("no address to connect to")

    async def close(self) -> None:
        for conn in list(self._open):
            self._drop(conn)
        self._idle.clear()
