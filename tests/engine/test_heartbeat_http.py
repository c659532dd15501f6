"""The heartbeat's HTTP client (aiohttp under the outbound policy, engine.heartbeat_client)
against a server that answers with scripted bytes over real TCP on 127.0.0.1: keep-alive, the
resend of a GET on a kept connection the server closed, TLS verified against the system's CA
store, and every malformed, oversized, stalled or truncated answer failing that request alone
with a message that says what happened."""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import socket
import ssl
import threading

import pytest

from engine.heartbeat_client import HeartbeatRequest, heartbeats_run, session_kept
from tests.support import wait_for

OK_BODY = json.dumps({"account_number": "123", "status": "ACTIVE"}).encode()
BOMB = gzip.compress(b"0" * (8 << 20))  # a few KiB on the wire, 8 MiB decoded


def ok_answer(extra: bytes = b"", body: bytes = OK_BODY) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n"
        + extra
        + b"\r\n"
        + body
    )


class ScriptedBroker:
    """Accepts connections; for each request reads the head and answers with `script(path)`
    (`again(path)` for a request after the first on one connection), which returns (bytes to
    send, then: "keep" | "close" | "close-later" | "stall" | "close-now": read, answer nothing)."""

    def __init__(self, script, *, again=None, tls: ssl.SSLContext | None = None):
        self.script = script
        self.again = again or script  # for a request that is not the first on its connection
        self.tls = tls
        self.per_connection: list[int] = []  # requests read on each connection, in order
        self.after_answer = b""  # sent unasked on a connection a while after its first answer
        self.extra_sent = False
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closed = 0  # connections this side has closed
        self.requests: list[bytes] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/v2/account") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket):
        buf = b""
        with self.lock:
            index = len(self.per_connection)
            self.per_connection.append(0)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            while not self.stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                with self.lock:
                    self.requests.append(head)
                    self.per_connection[index] += 1
                    nth = self.per_connection[index]
                path = head.split(b" ")[1].decode()
                data, then = (self.script if nth == 1 else self.again)(path)
                if nth == 1 and self.after_answer:  # once the client has the answer and has released it
                    conn.sendall(data)
                    self.stop.wait(0.2)
                    conn.sendall(self.after_answer)
                    self.extra_sent = True
                    continue
                if then == "close-now":  # read the request, answer nothing
                    return
                conn.sendall(data)
                if then == "close":
                    return
                if then == "close-later":  # after the client's loop has stopped looking
                    self.stop.wait(0.1)
                    return
                if then == "stall":
                    self.stop.wait(30)
                    return
        except OSError:
            return
        finally:
            conn.close()
            with self.lock:
                self.closed += 1

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.fixture
def broker():
    made = []

    def start(script, **kwargs):
        server = ScriptedBroker(script, **kwargs)
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()


def check(urls, *, concurrency=10, timeout=5.0):
    items = [HeartbeatRequest(key=i, url=url, access_token=f"tok{i}", broker_name="Acme") for i, url in enumerate(urls)]
    return heartbeats_run(items, concurrency=concurrency, timeout=timeout)


def test_connections_are_kept_and_the_request_is_well_formed(broker):
    server = broker(lambda path: (ok_answer(), "keep"))
    results = check([server.url("/v2/account?fields=a%20b")] * 60, concurrency=5)
    assert all(r.ok for r in results) and results[0].payload["status"] == "ACTIVE"
    assert len(server.requests) == 60 and server.connections <= 5
    head = server.requests[0].decode()
    assert head.startswith("GET /v2/account?fields=a%20b HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}" in head
    assert "Authorization: Bearer tok" in head and "Accept: application/json" in head
    assert "Cookie" not in head


def test_a_kept_connection_the_broker_closed_gets_the_get_once_more(broker):
    # The broker says nothing of closing but closes every connection soon after one answer,
    # while the sweep is between batches: the next batch finds its kept connections dead
    # and resends on new ones, exactly once each.
    server = broker(lambda path: (ok_answer(), "close-later"))
    with session_kept():
        first = check([server.url()] * 5, concurrency=5)
        wait_for(lambda: server.closed == 5, timeout=10, what="the broker closed the five kept connections")
        second = check([server.url()] * 5, concurrency=5)
    assert all(r.ok for r in first + second), [r.error for r in second]
    assert len(server.requests) == 10 and server.connections == 10


def test_a_kept_connection_closed_as_the_get_arrives_gets_it_once_more(broker):
    # The race the idle check cannot see: the broker closes the kept connection just as the
    # next GET reaches it. The GET (idempotent, spends no token) goes once more on a new one.
    server = broker(lambda path: (ok_answer(), "keep"), again=lambda path: (b"", "close-now"))
    with session_kept():
        first = check([server.url()], concurrency=1)
        second = check([server.url()], concurrency=1)
    assert first[0].ok and second[0].ok, second[0].error
    assert server.per_connection == [2, 1]  # the GET read and dropped on the kept one, then sent again


def test_a_broker_that_never_answers_gets_the_get_at_most_twice(broker):
    server = broker(lambda path: (b"", "close-now"))
    (result,) = check([server.url()])
    assert not result.ok
    assert result.error.message == "Acme closed the connection before its answer was complete."
    assert len(server.requests) == 2  # aiohttp resends an idempotent request once, never more


def test_an_answer_ended_by_closing_the_connection_is_read(broker):
    server = broker(lambda path: (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + OK_BODY, "close"))
    (result,) = check([server.url()])
    assert result.ok and result.payload["account_number"] == "123"


def test_chunked_gzip_and_an_interim_answer_are_read(broker):
    packed = gzip.compress(OK_BODY)
    chunked = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + f"{len(packed[:10]):x}\r\n".encode()
        + packed[:10]
        + b"\r\n"
        + f"{len(packed[10:]):x}\r\n".encode()
        + packed[10:]
        + b"\r\n0\r\n\r\n"
    )
    server = broker(lambda path: (chunked, "keep"))
    results = check([server.url()] * 3, concurrency=1)
    assert all(r.ok for r in results), [r.error for r in results]
    assert results[0].payload["status"] == "ACTIVE" and server.connections == 1


@pytest.mark.parametrize(
    ("answer", "then", "words"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: " + str(2 << 20).encode() + b"\r\n\r\n" + b"x" * (2 << 20),
            "keep",
            "larger than brokerlink's 1 MiB limit",
        ),
        (
            b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
            "keep",
            "headers are over brokerlink's limit",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
            + b"".join(b"X-%d: " % i + b"y" * 8000 + b"\r\n" for i in range(10))
            + b"\r\n{}",
            "keep",
            "headers are over brokerlink's limit",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
            + str(len(BOMB)).encode()
            + b"\r\n\r\n"
            + BOMB,
            "keep",
            "larger than brokerlink's 1 MiB limit",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\n0123456789",
            "keep",
            "the answer's compressed body is corrupt",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "keep", "sent an answer brokerlink cannot read"),
        (
            b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"acc',
            "close",
            "closed the connection before its answer was complete",
        ),
        (b"", "close", "closed the connection before its answer was complete"),
    ],
    ids=[
        "body-over-limit",
        "too-many-headers",
        "header-bytes-over-limit",
        "gzip-bomb",
        "corrupt-gzip",
        "not-http",
        "truncated",
        "no-answer",
    ],
)
def test_a_bad_answer_fails_that_request_alone_and_says_why(broker, answer, then, words):
    good = broker(lambda path: (ok_answer(), "keep"))
    bad = broker(lambda path: (answer, then))
    results = check([good.url(), bad.url(), good.url()], concurrency=3)
    assert results[0].ok and results[2].ok
    assert not results[1].ok and words in results[1].error.message
    assert results[1].error.message.startswith("Acme ")


def test_a_stalled_broker_is_reported_as_not_answering_in_time(broker):
    # The broker stalls for 30 s: only the client's 0.5 s timeout can end the check with this message.
    server = broker(lambda path: (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{", "stall"))
    (result,) = check([server.url()], timeout=0.5)
    assert not result.ok and result.error.message == "Acme did not answer in time."


def test_a_redirect_is_answered_not_followed(broker):
    target = broker(lambda path: (ok_answer(), "keep"))
    server = broker(lambda path: (b"HTTP/1.1 302 Found\r\nLocation: " + target.url().encode() + b"\r\n"
                                  b"Content-Length: 0\r\n\r\n", "keep"))  # fmt: skip
    (result,) = check([server.url()])
    assert not result.ok and result.http_status == 302
    assert target.requests == []


def test_a_closed_port_is_reported_as_unreachable():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    (result,) = check([f"http://127.0.0.1:{port}/v2/account"])
    assert not result.ok and result.error.message == "Acme could not be reached (ConnectionRefusedError)."


def test_a_second_answer_nobody_asked_for_is_ignored_and_the_connection_dropped(broker):
    answers = iter([ok_answer() + ok_answer(body=b'{"status": "SMUGGLED"}'), ok_answer()])
    server = broker(lambda path: (next(answers), "keep"))
    with session_kept():
        first = check([server.url()], concurrency=1)
        second = check([server.url()], concurrency=1)
    assert first[0].ok and first[0].payload["status"] == "ACTIVE"
    assert second[0].ok and second[0].payload["status"] == "ACTIVE"
    assert server.connections == 2  # the connection that carried the extra answer was not kept


def test_tls_is_verified_against_the_system_ca_store(broker, tmp_path):
    """A certificate no CA of the system's store signed is refused before any request is sent,
    even though it names the host."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = broker(lambda path: (ok_answer(), "keep"), tls=tls)
    (result,) = check([server.url()])
    assert not result.ok and result.error.message == "Acme could not be reached (SSLCertVerificationError)."
    assert server.requests == []


@pytest.mark.xfail(
    strict=True,
    reason="aiohttp queues an answer that reaches a pooled idle connection and hands it to that "
    "connection's next request (aio-libs/aiohttp#13656, closed upstream; still so in the pinned "
    "release). When an upgrade fixes it, this test passes, xfail(strict) fails: drop the mark.",
)
def test_an_answer_sent_to_an_idle_kept_connection_is_not_taken_for_the_next_one(broker):
    # The same-bytes case is covered above (aiohttp does not reuse a connection with an answer
    # queued when it is released); here the extra answer arrives after the release.
    extra = ok_answer(body=b'{"status": "SMUGGLED"}')
    server = broker(lambda path: (ok_answer(), "keep"))
    server.after_answer = extra
    with session_kept():
        first = check([server.url()], concurrency=1)
        wait_for(lambda: server.extra_sent, timeout=10, what="the extra answer sent")
        second = check([server.url()], concurrency=1)
    assert first[0].payload["status"] == "ACTIVE"
    assert second[0].ok and second[0].payload["status"] == "ACTIVE"
