"""Helpers for tests: waiting for events (`wait_for`), and for tests that start real processes
free ports, readiness waits and the environment a subprocess needs to share the test database
and Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import requests
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
# The project's own top-level packages (the README's app map, config included).
PROJECT_PACKAGES = (
    "accounts",
    "api",
    "brokers",
    "common",
    "config",
    "connections",
    "engine",
    "ops",
    "outbound",
    "pages",
    "partners",
    "preferences",
    "sandbox",
    "vault",
)
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, *, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException as exc:
            last_error = exc
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last_error}")


def wait_for(condition, *, timeout: float = 20.0, what: str = "condition", interval: float = 0.05):
    """Wait for an event (a row, a counter, a message, a log line): poll `condition()` until it
    returns something truthy, and return that. The deadline only bounds a failure: a passing
    test never waits for it, so a slow machine makes the test slower, never red.

        wait_for(lambda: Connection.objects.filter(status="connected").exists(), what="connected")

    To prove that something does NOT happen, do not wait for a while: wait for a later event
    that must come after it (the next poll, a second connection's change) and then assert.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not seen within {timeout} s")
        time.sleep(interval)


async def wait_for_async(condition, *, timeout: float = 20.0, what: str = "condition", interval: float = 0.02):
    """`wait_for` inside an event loop: the loop keeps running while it polls."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not seen within {timeout} s")
        await asyncio.sleep(interval)


def test_database_url() -> str:
    """The URL of the database pytest-django created (test_<name>), for subprocesses."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgresql://{auth}{host}{port}/{db['NAME']}"


def subprocess_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process (server, worker, beat) sharing this test's database.

    Use only from tests marked `transactional_db` (or `django_db(transaction=True)`), so the
    rows the test writes are committed and visible to the child.
    """
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_ENV": "development",
            "DATABASE_URL": test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "TOKEN_ENCRYPTION_KEYS": settings.TOKEN_ENCRYPTION_KEYS,
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "BROKERLINK_VAR_DIR": str(settings.VAR_DIR),
            "PYTHONUNBUFFERED": "1",
        }
    )
    # Set by the browser fixtures for Playwright in this process; a server never runs with it
    # (`check --deploy` rightly refuses it).
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(overrides)
    return env


@contextmanager
def running(cmd: list[str], *, env: dict[str, str], ready_url: str | None = None, log_name: str = "proc"):
    """Run a child process for the duration of a with-block; its output goes to a log file
    that is printed if the block fails, so a failing test shows what the child said."""
    log_dir = Path(settings.VAR_DIR) / "test-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{log_name}-{os.getpid()}-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_path = log_path  # what the child said so far: wait_for(lambda: "..." in log_text(proc))
    try:
        if ready_url:
            wait_for_http(ready_url, process=proc)
        yield proc
    except BaseException:
        print(f"--- {log_name} output ---\n{log_path.read_text(errors='replace')[-6000:]}")
        raise
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Its whole session, not only the leader: a worker's pool children left running
                # would keep their database sessions (and locks) past the test.
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def bytes_waiting_at(port: int) -> int:
    """Bytes that arrived on 127.0.0.1:`port`'s connections and that the server has not read
    (from /proc/net/tcp): a paused server's received, unanswered requests."""
    waiting = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":  # ESTABLISHED
                waiting += int(queues.split(":")[1], 16)
    return waiting


def log_text(proc: subprocess.Popen) -> str:
    """Everything a child started by `running` has written so far."""
    return Path(proc.log_path).read_text(errors="replace")


def with_second_factor(user):
    """Enrol a TOTP authenticator for `user` (staff need one for admin and operator pages).

    Returns the user; its base32 secret is on `user.totp_secret` for tests that sign in.
    """
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    user.totp_secret = secret
    return user


def totp_code(secret: str) -> str:
    import time

    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def force_login_passes_enrolled_factor(sender, request, user, **kwargs):
    """`client.force_login(user)` of someone with a second factor stands for a sign-in that
    passed it (allauth's login only finishes after the factor when one is enrolled), so the
    session records the step as allauth's MFA stage would. A real sign-in with only a password
    (the attack of issue 24) never reaches this with a factor enrolled. Test scaffolding: uses
    allauth's internal recorder, which the application never does."""
    from allauth.account.authentication import get_authentication_records
    from allauth.account.internal.flows.login import record_authentication
    from allauth.mfa.models import Authenticator

    if request is None or not hasattr(request, "session"):
        return
    if any(r.get("method") == "mfa" for r in get_authentication_records(request, user)):
        return
    factor = Authenticator.objects.filter(user=user, type__in=("totp", "webauthn")).first()
    if factor is not None:
        record_authentication(request, user, "mfa", id=factor.pk, type=factor.type)


def pass_second_factor(page, base_url: str, user, next_path: str) -> None:
    """In a browser already signed in with the password: pass the factor enrolled with
    `with_second_factor` through allauth's reauthentication, as a person would (staff pages
    need a factor used in this very session), ending on `next_path`."""
    from urllib.parse import urlencode

    page.goto(f"{base_url}/accounts/2fa/reauthenticate/?{urlencode({'next': next_path})}")
    page.locator("input[name=code]").fill(totp_code(user.totp_secret))
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"{base_url}{next_path}")


# --- what open pages hear ----------------------------------------------------------------

_LIVE_END = ["end-of-test", "end-of-test", "", ""]


@contextmanager
def live_messages():
    """Yields a list that, after the block, holds the `changes` of every live message
    published during it. Ends on a marker published last, so no wait is for time."""
    import json

    import redis

    from connections import display

    assert settings.REDIS_URL, "the test settings use Redis"
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub()
    pubsub.subscribe(display.live_channel())
    assert pubsub.get_message(timeout=10)["type"] == "subscribe"
    heard: list[list] = []
    try:
        yield heard
        display.changes_publish([_LIVE_END])
        while True:
            message = pubsub.get_message(timeout=10)
            assert message is not None, "the end marker never arrived"
            if message["type"] != "message":
                continue
            changes = json.loads(message["data"])["changes"]
            if changes == [_LIVE_END]:
                break
            heard.append(changes)
    finally:
        pubsub.close()
        client.close()
