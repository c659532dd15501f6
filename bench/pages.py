"""Page load benchmark (not a test): the dashboard under concurrent users, and thousands of
open live pages, against brokerlink in production mode (gunicorn + uvicorn workers, DEBUG
off, PostgreSQL, Redis, a pool per web process).

    .venv/bin/python bench/pages.py --users 200 --streams 2000

Loopback only; bounded in time (`--seconds` per dashboard level, `--wait` for the sweep's
changes) and count (`--streams`). Uses DATABASE_URL (default
postgresql://postgres@127.0.0.1:5432/brokerlink_bench_pages, created if missing; never the
test database) and its own Redis key prefix. Starts its own sandbox and web server.

Prints, side by side: dashboard requests/s and p50/p95/p99 at each concurrency (with no
stream open and with every stream open), the open streams held, PostgreSQL connections in
use (pg_stat_activity, peak), web RSS, and whether every stream got the sweep's changes
(the sandbox is switched to an outage, one sweep runs in a subprocess as a worker would,
and every connection's card must receive its `card-<id>` or `conn-<id>` event).

Then, with `--browser-pages N`, `--like-pages N` or `--browsing N`, pages as people leave
them open (`open_pages`): N real Chromium dashboards (Debian's /usr/bin/chromium through
Playwright, tabs of `--browser-contexts` signed-in users), N browser-like aiohttp dashboards
that re-fetch on events as static/js/live.js does (`like_page`), and N people viewing the
dashboard, for `--browser-seconds` in which the sandbox recovers from an outage and `--sweeps`
sweeps run. Prints requests per open page per minute for each kind (the synthetic streams
above only listen, so they cannot show polling or re-fetches), page and re-fetch latency,
every answer's status, console errors, PostgreSQL connections in use and the machine's load.
`--pages-only` skips the synthetic part:

    .venv/bin/python bench/pages.py --users 400 --pages-only --browser-pages 40 \
        --browser-contexts 8 --like-pages 400 --browsing 20 --browser-seconds 120 --sweeps 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from heartbeat import ensure_database  # noqa: E402


def rss_mb(pid: int) -> float:
    """RSS of a process and its children (the gunicorn master and its workers), in MB."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return total / 1024


def tree_cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of a process and its children (gunicorn master + workers)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo.extend(int(c) for c in children)
    return total


def db_connections_in_use(db_name: str) -> int:
    import psycopg

    url = os.environ["DATABASE_URL"].replace(f"/{db_name}", "/postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        # Our own monitoring connection is on the postgres database, so it is not counted.
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db_name,)).fetchone()[0]


def connections_per_worker(port: int) -> list[int]:
    """Established client connections each web worker process holds (from `ss`), largest first:
    latency is set by the busiest worker, so an uneven split shows up as p95."""
    import re

    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=False
    ).stdout
    counts: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        counts[pid] = counts.get(pid, 0) + 1
    return sorted(counts.values(), reverse=True)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


async def dashboard_load(
    base: str,
    cookies: list[str],
    concurrency: int,
    seconds: float,
    web_pid: int,
    each_once: bool = False,
    ramp: float = 0.0,
) -> dict:
    """`concurrency` users, each viewing the dashboard again as soon as it arrived. Users arrive
    over `ramp` seconds (user i at i × ramp / concurrency, as people do, not all in the same
    microsecond); only requests started after the ramp are measured, for `seconds`."""
    port = urlsplit(base).port
    import aiohttp

    records: list[tuple[float, float, object]] = []  # (started, ms, status)
    t0 = time.monotonic()
    window = [t0 + ramp, t0 + ramp + seconds]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        # each_once: every user's dashboard once (the cold view), instead of a timed loop
        todo = list(range(len(cookies))) if each_once else []

        def more() -> bool:
            return bool(todo) if each_once else time.monotonic() < window[1]

        async def user(i):
            await asyncio.sleep(i * ramp / max(1, concurrency))
            cookie, url = cookies[i % len(cookies)], f"{base}/connections/"
            while more():
                if each_once:
                    cookie = cookies[todo.pop()]
                started = time.monotonic()
                try:
                    async with session.get(url, headers={"Cookie": cookie}, allow_redirects=False) as resp:
                        await resp.read()
                        status = resp.status
                except aiohttp.ClientError as exc:
                    status = type(exc).__name__
                records.append((started, (time.monotonic() - started) * 1000, status))

        split: list[int] = []
        cpu_at: dict[str, float] = {}

        async def sample():
            await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
            cpu_at["start"] = tree_cpu_seconds(web_pid)
            await asyncio.sleep(min(1.0, seconds / 2))
            split.extend(await asyncio.to_thread(connections_per_worker, port))

        sampler = asyncio.ensure_future(sample())
        await asyncio.gather(*(user(i) for i in range(concurrency)))
        await sampler
        ended = time.monotonic()
        cpu = tree_cpu_seconds(web_pid) - cpu_at["start"]
    measured = [(ms, status) for started, ms, status in records if started >= window[0]]
    latencies = [ms for ms, _ in measured]
    statuses: dict = {}
    for _, status in measured:
        statuses[status] = statuses.get(status, 0) + 1
    ok = statuses.get(200, 0)
    return {
        "rps": ok / (ended - window[0]),
        "p50": pct(latencies, 0.5),
        "p95": pct(latencies, 0.95),
        "p99": pct(latencies, 0.99),
        "errors": {k: v for k, v in statuses.items() if k != 200},
        "cpu_ms": 1000 * cpu / max(1, len(latencies)),
        "split": split,
    }


class Streams:
    """N open event streams; what each one received."""

    def __init__(self, base: str, sessions: list[tuple[str, list[str]]], count: int):
        self.base, self.sessions, self.count = base, sessions, count
        self.opened = 0
        self.refused: dict = {}
        self.received: list[set[str]] = [set() for _ in range(count)]
        self.expected: list[set[str]] = [set(sessions[i % len(sessions)][1]) for i in range(count)]
        self.ended = 0
        self.tasks = []

    async def _one(self, session, i: int, gate: asyncio.Semaphore) -> None:
        import aiohttp

        cookie = self.sessions[i % len(self.sessions)][0]
        try:
            async with gate:
                resp = await session.get(
                    f"{self.base}/connections/stream/",
                    headers={"Cookie": cookie},
                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
                )
                if resp.status != 200:
                    self.refused[resp.status] = self.refused.get(resp.status, 0) + 1
                    resp.release()
                    return
                first = await resp.content.readuntil(b"event: hello")
                assert b"retry:" in first
                self.opened += 1
            async for line in resp.content:
                # conn-<id> (re-fetch) or card-<id> (the card itself): either tells the page.
                if line.startswith((b"event: conn-", b"event: card-")):
                    self.received[i].add(line[len(b"event: conn-") :].strip().decode())
            self.ended += 1
        except (aiohttp.ClientError, asyncio.IncompleteReadError) as exc:
            self.refused[type(exc).__name__] = self.refused.get(type(exc).__name__, 0) + 1

    async def open(self, session, parallel: int = 100) -> None:
        gate = asyncio.Semaphore(parallel)
        self.tasks = [asyncio.ensure_future(self._one(session, i, gate)) for i in range(self.count)]
        deadline = time.monotonic() + 120
        while self.opened + sum(self.refused.values()) < self.count and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    def complete(self) -> int:
        return sum(1 for got, want in zip(self.received, self.expected, strict=True) if want <= got)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--per-user", type=int, default=5, help="connections per user")
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--levels", default="10,50,100", help="dashboard concurrency levels")
    parser.add_argument("--seconds", type=float, default=10.0, help="per dashboard level, measured")
    parser.add_argument("--ramp", type=float, default=2.0, help="users arrive over this many seconds (not measured)")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds for every stream to get the changes")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=8, help="DB_POOL_MAX_SIZE per web process")
    parser.add_argument("--port", type=int, default=9277)
    parser.add_argument("--sandbox-port", type=int, default=9278)
    parser.add_argument(
        "--browser-pages", type=int, default=0, help="real-browser mode: Chromium dashboards kept open (0: off)"
    )
    parser.add_argument(
        "--browser-contexts", type=int, default=5, help="real-browser mode: signed-in users the pages are tabs of"
    )
    parser.add_argument(
        "--like-pages", type=int, default=0, help="browser-like aiohttp dashboards that re-fetch as live.js does"
    )
    parser.add_argument("--browsing", type=int, default=0, help="users viewing the dashboard while the pages are open")
    parser.add_argument("--think", type=float, default=2.0, help="browsing users' pause between views, seconds")
    parser.add_argument(
        "--browser-seconds", type=float, default=120.0, help="open pages: the measured window (sweeps in it)"
    )
    parser.add_argument("--sweeps", type=int, default=3, help="open pages: sweeps in the window (the first recovers)")
    parser.add_argument("--pages-only", action="store_true", help="open pages only, no synthetic dashboards/streams")
    args = parser.parse_args()

    from tests.fixtures.sandbox import CONTROL_TOKEN

    db_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/brokerlink_bench_pages")
    db_name = urlsplit(db_url).path.lstrip("/")
    if db_name in ("test", "postgres"):
        sys.exit("refusing to benchmark in the shared test/postgres database; use a dedicated one")
    ensure_database(db_url)
    var = ROOT / "var" / "bench-pages"
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": db_url,
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        "CACHE_KEY_PREFIX": f"benchpages{os.getpid()}",
        "CELERY_QUEUE": f"benchpages{os.getpid()}",
        "TOKEN_ENCRYPTION_KEYS": os.environ.get("TOKEN_ENCRYPTION_KEYS", "b1:" + "B" * 43),
        "SANDBOX_BASE_URL": f"http://127.0.0.1:{args.sandbox_port}",
        "SANDBOX_CONTROL_TOKEN": CONTROL_TOKEN,
        "BROKERLINK_VAR_DIR": str(var),
        "LOG_LEVEL": "WARNING",
        "DJANGO_DEBUG": "0",
        # The bench signs its users in by writing sessions itself, so it shares the web's key.
        "DJANGO_SECRET_KEY": "bench-" + "x" * 50,
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    web_env = dict(
        os.environ,
        DJANGO_ENV="production",
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        SITE_URL=f"https://127.0.0.1:{args.port}",  # links only; production insists on https
        SECURE_SSL_REDIRECT="0",
        DB_POOL_MAX_SIZE=str(args.pool),
    )
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=web_env, check=True
    )
    procs = []
    try:
        sandbox_env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings_sandbox")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "sandbox.asgi:application", "--host", "127.0.0.1",
                 "--port", str(args.sandbox_port), "--log-level", "warning", "--no-access-log"],
                cwd=ROOT, env=sandbox_env, start_new_session=True,
            )
        )  # fmt: skip
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
             "--bind", f"127.0.0.1:{args.port}", "--workers", str(args.web_workers), "--backlog", "4096",
             "--graceful-timeout", "5", "--log-level", "warning"],
            cwd=ROOT, env=web_env, start_new_session=True,
        )  # fmt: skip
        procs.append(web)
        run(args, db_name, web.pid)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def seed(args, sandbox_url: str) -> tuple[list[tuple[str, list[str]]], dict]:
    """U users with C sandbox connections each (one real grant's tokens); a session cookie each."""
    import requests
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from accounts.models import User
    from brokers.models import BrokerApp
    from connections.broker_client import profile_for
    from connections.models import Connection, ConnectionStatus
    from connections.tokens import connection_apply_token_response
    from engine.models import EngineState
    from sandbox.models import SandboxClient
    from tests.fixtures.sandbox import SandboxServer, pkce_pair

    sandbox = SandboxServer(args.sandbox_port)
    sandbox._ok(sandbox.control("POST", "users", {"demo": True}))
    SandboxClient.objects.filter(name="bench-pages").delete()
    client = sandbox.create_client(name="bench-pages")
    verifier, challenge = pkce_pair()
    code = sandbox.browser().authorize(client, code_challenge=challenge).code
    token = requests.post(
        f"{sandbox_url}/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": client["redirect_uris"][0],
              "code_verifier": verifier},
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    ).json()  # fmt: skip
    token["expires_in"] = 3600
    Connection.objects.filter(broker_slug="sandbox").delete()
    User.objects.filter(email__startswith="bench-pages-").delete()
    app, _ = BrokerApp.objects.update_or_create(
        broker_slug="sandbox", environment="live", defaults={"client_id": client["client_id"]}
    )
    app.client_secret = client["client_secret"]
    app.save()
    profile = profile_for("sandbox", "live")
    users = User.objects.bulk_create(
        [User(email=f"bench-pages-{i}@example.com", password="!") for i in range(args.users)]  # noqa: S106
    )
    users = list(User.objects.filter(email__startswith="bench-pages-").order_by("email"))
    later = timezone.now() + timedelta(hours=1)  # the sweep runs when the bench says so
    rows, now = [], timezone.now()
    for user in users:
        for j in range(args.per_user):
            conn = Connection(user=user, broker_slug="sandbox", broker_app=app, environment="live",
                              account_id=f"bench-{user.pk}-{j}", account_number_masked=f"••{j:04d}",
                              status=ConnectionStatus.CONNECTED, health_score=100, quality="excellent",
                              last_success_at=now, last_check_at=now, last_latency_ms=20)  # fmt: skip
            connection_apply_token_response(connection=conn, profile=profile, token=token, first_grant=True)
            conn.next_check_at = later
            rows.append(conn)
    Connection.objects.bulk_create(rows, batch_size=2000)
    EngineState.objects.bulk_create([c.engine_state_get() for c in rows], batch_size=2000)  # bulk_create skips save()
    ids: dict = {}
    for pk, user_id in Connection.objects.filter(user__in=users).values_list("pk", "user_id"):
        ids.setdefault(user_id, []).append(str(pk))
    sessions = []
    for user in users:
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        sessions.append((f"{settings.SESSION_COOKIE_NAME}={store.session_key}", ids[user.pk]))
    return sessions, client


SWEEP_NOW = (
    "import django; django.setup(); from django.utils import timezone; "
    "from connections.models import Connection; from engine.models import CircuitBreaker, EngineState; "
    "from engine.sweep import sweep_run; now = timezone.now(); "
    "EngineState.objects.update(next_check_at=now, lease_until=None, lease_owner=''); "
    "CircuitBreaker.objects.filter(state='open').update(next_probe_at=now); r = sweep_run(); "
    "from collections import Counter; "
    "print(r.claimed, 'claimed,', r.checked, 'checked; statuses now:', "
    "dict(Counter(Connection.objects.values_list('status', flat=True))))"
)


class PageLog:
    """What the open pages asked the server during the measured window: (who, kind, ms, status)."""

    def __init__(self) -> None:
        self.window = [float("inf"), float("inf")]
        self.records: list[tuple[str, str, float, object]] = []
        self.pushed = {"card": 0, "summary-html": 0}
        self.streams_up = 0  # like pages whose first stream is open

    def measuring(self) -> bool:
        return self.window[0] <= time.monotonic() <= self.window[1]

    def add(self, who: str, kind: str, started: float, ms: float, status) -> None:
        if self.window[0] <= started <= self.window[1]:
            self.records.append((who, kind, ms, status))

    async def get(self, session, who: str, kind: str, url: str, cookie: str, htmx: bool = True):
        """One request as the page makes it (htmx's headers); (status, busy)."""
        import aiohttp

        headers = {"Cookie": cookie}
        if htmx:
            headers.update({"HX-Request": "true", "HX-Current-URL": url})
        started = time.monotonic()
        busy = False
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                await resp.read()
                status, busy = resp.status, bool(resp.headers.get("X-Brokerlink-Busy"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            status = type(exc).__name__
        self.add(who, kind, started, (time.monotonic() - started) * 1000, status)
        return status, busy


class LikePage:
    """A browser-like dashboard (aiohttp), doing what static/js/live.js and the htmx
    attributes make a real one do: the page, then its stream; a `conn-<id>` event re-fetches
    that card (a newer one cancels a re-fetch still in flight, hx-sync="this:replace"); a
    `summary` event re-fetches the strip at a random moment within a second (one per batch);
    `card-<id>` and `summary-html` carry the change (no request); `bye` reopens the stream;
    a refused or dropped stream polls every card and the strip every 5 s until it reopens; a
    busy answer (204 + X-Brokerlink-Busy) asks again 2-8 s later."""

    def __init__(self, session, base: str, cookie: str, ids: list[str], log: PageLog) -> None:
        self.session, self.base, self.cookie, self.ids, self.log = session, base, cookie, ids, log
        self.pending: dict[str, asyncio.Task] = {}

    async def refetch(self, kind: str, url: str, delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        while True:
            status, busy = await self.log.get(self.session, "like", kind, url, self.cookie)
            if not (status == 204 and busy):
                return
            await asyncio.sleep(2 + random.random() * 6)

    def soon(self, key: str, kind: str, url: str, delay: float = 0.0, replace: bool = True) -> None:
        running = self.pending.get(key)
        if running and not running.done():
            if not replace:
                return
            running.cancel()
        self.pending[key] = asyncio.ensure_future(self.refetch(kind, url, delay))

    def on_event(self, event: str) -> None:
        base, log = self.base, self.log
        if event.startswith("conn-"):
            pk = event[5:]
            self.soon(f"card-{pk}", "card", f"{base}/connections/{pk}/card/")
        elif event == "summary":
            self.soon("summary", "summary", f"{base}/connections/summary/", random.random(), replace=False)
        elif event.startswith("card-") and log.measuring():
            log.pushed["card"] += 1
        elif event == "summary-html" and log.measuring():
            log.pushed["summary-html"] += 1

    def poll_all(self) -> None:
        for pk in self.ids:
            self.soon(f"card-{pk}", "card", f"{self.base}/connections/{pk}/card/")
        self.soon("summary", "summary", f"{self.base}/connections/summary/")

    async def stream_open(self):
        import aiohttp

        started = time.monotonic()
        try:
            resp = await self.session.get(
                f"{self.base}/connections/stream/",
                headers={"Cookie": self.cookie},
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
            )
        except aiohttp.ClientError as exc:
            self.log.add("like", "stream", started, 0.0, type(exc).__name__)
            return None
        self.log.add("like", "stream", started, (time.monotonic() - started) * 1000, resp.status)
        if resp.status != 200:
            resp.release()
            return None
        return resp

    async def stream_follow(self, resp) -> str:
        """Handle the stream's events until it ends; the last event's name (`bye`, ...)."""
        import aiohttp

        event = ""
        try:
            async for line in resp.content:
                if line.startswith(b"event: "):
                    event = line[7:].strip().decode()
                elif not line.strip() and event:
                    if event in ("bye", "signed-out"):
                        return event
                    self.on_event(event)
                    event = ""
        except (aiohttp.ClientError, asyncio.IncompleteReadError):
            pass
        finally:
            resp.release()
        return event

    async def run(self) -> None:
        try:
            await self.log.get(self.session, "like", "page", f"{self.base}/connections/", self.cookie, htmx=False)
            up = False
            while True:
                resp = await self.stream_open()
                if resp is None:
                    await asyncio.sleep(5)  # the stream is down: the page polls (live-poll)
                    self.poll_all()
                    continue
                if not up:
                    up = True
                    self.log.streams_up += 1
                if await self.stream_follow(resp) == "signed-out":
                    return
        finally:
            for task in self.pending.values():
                task.cancel()


async def like_page(session, base: str, cookie: str, ids: list[str], log: PageLog) -> None:
    """One browser-like dashboard, open until signed out (`LikePage`)."""
    await LikePage(session, base, cookie, ids, log).run()


async def browsing_user(session, base: str, cookie: str, log: PageLog, think: float) -> None:
    """Someone clicking through: the dashboard, a pause of ~`think` seconds, again."""
    import random

    while True:
        await log.get(session, "browse", "page", f"{base}/connections/", cookie, htmx=False)
        await asyncio.sleep(think * (0.5 + random.random()))


async def open_pages(base: str, sessions, args, client: dict, db_name: str, web_pid: int) -> dict:
    """Pages as people leave them open, for `--browser-seconds`: `--browser-pages` real
    Chromium dashboards (spread over `--browser-contexts` signed-in users, several tabs each),
    `--like-pages` browser-like aiohttp dashboards (`like_page`) and `--browsing` users
    viewing the dashboard. In the window the sandbox recovers from an outage (every card
    changes) and `--sweeps` sweeps run, evenly spaced, as a worker would run them. Counts the
    requests each kind of page makes (Chromium's XHR/fetch, stream (re)opens apart), their
    latency and statuses, PostgreSQL connections in use, the web processes' CPU and the
    machine's load."""
    import aiohttp
    from playwright.async_api import async_playwright

    from tests.fixtures.browser import CHROMIUM, CHROMIUM_ARGS
    from tests.fixtures.sandbox import SandboxServer

    log = PageLog()
    real = {"requests": 0, "streams": 0, "errors": 0, "by_path": {}, "statuses": {}, "error_texts": []}
    sandbox = SandboxServer(args.sandbox_port)

    def sweep() -> str:
        done = subprocess.run(
            [sys.executable, "-c", SWEEP_NOW], cwd=ROOT, env=dict(os.environ), capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        return (done.stdout.strip() or done.stderr.strip()[-300:]).splitlines()[-1]

    # The pages open on an outage (every card "Broker outage"), so the recovery in the window
    # changes every card they show.
    sandbox.set_faults(client["client_id"], outage=True)
    before = await asyncio.to_thread(sweep)

    def on_request(request) -> None:
        if not log.measuring():
            return
        path = urlsplit(request.url).path
        if path.endswith("/stream/"):
            real["streams"] += 1
        elif request.resource_type in ("xhr", "fetch"):
            real["requests"] += 1
            kind = "card" if path.endswith("/card/") else path
            real["by_path"][kind] = real["by_path"].get(kind, 0) + 1

    def on_response(response) -> None:
        if log.measuring() and response.request.resource_type in ("xhr", "fetch", "eventsource"):
            real["statuses"][response.status] = real["statuses"].get(response.status, 0) + 1

    def on_console(message) -> None:
        if log.measuring() and message.type == "error":
            real["errors"] += 1
            if len(real["error_texts"]) < 3:
                real["error_texts"].append(message.text[:200])

    contexts = max(1, min(args.browser_contexts, args.browser_pages or 1))
    like_sessions = sessions[contexts:] or sessions
    out: dict = {"before": before, "sweeps": []}
    peak = {"db": 0}
    tasks: list[asyncio.Task] = []
    async with (
        async_playwright() as playwright,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
        ) as session,
    ):
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            opened_at = time.monotonic()
            for i in range(args.browser_pages):
                if i < contexts:
                    name, value = sessions[i][0].split("=", 1)
                    context = await browser.new_context()
                    await context.add_cookies([{"name": name, "value": value, "url": base}])
                    real.setdefault("contexts", []).append(context)
                page = await real["contexts"][i % contexts].new_page()
                page.on("request", on_request)
                page.on("response", on_response)
                page.on("console", on_console)
                await page.goto(f"{base}/connections/")
                await page.wait_for_function("() => document.body.dataset.live === 'open'", timeout=60_000)
            out["browser_open_seconds"] = time.monotonic() - opened_at
            for i in range(args.like_pages):
                cookie, ids = like_sessions[i % len(like_sessions)]
                tasks.append(asyncio.ensure_future(like_page(session, base, cookie, ids, log)))
                await asyncio.sleep(0.01)
            deadline = time.monotonic() + 180  # the like pages' first views and streams
            while log.streams_up < args.like_pages and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            out["like_up"] = log.streams_up
            for i in range(args.browsing):
                cookie = sessions[(i * 7) % len(sessions)][0]
                tasks.append(asyncio.ensure_future(browsing_user(session, base, cookie, log, args.think)))

            async def sample():
                while True:
                    peak["db"] = max(peak["db"], await asyncio.to_thread(db_connections_in_use, db_name))
                    await asyncio.sleep(0.5)

            sampler = asyncio.ensure_future(sample())
            out["load_start"] = os.getloadavg()
            cpu0 = tree_cpu_seconds(web_pid)
            t0 = time.monotonic()
            log.window = [t0, t0 + args.browser_seconds]
            sandbox.set_faults(client["client_id"], outage=False)
            every = args.browser_seconds / max(1, args.sweeps)
            for n in range(args.sweeps):
                await asyncio.sleep(max(0.0, t0 + n * every + 2 - time.monotonic()))
                started = time.monotonic()
                line = await asyncio.to_thread(sweep)
                out["sweeps"].append(f"at {started - t0:.0f}s, {time.monotonic() - started:.1f}s: {line}")
            await asyncio.sleep(max(0.0, log.window[1] - time.monotonic()))
            out["seconds"] = time.monotonic() - t0
            out["cpu"] = tree_cpu_seconds(web_pid) - cpu0
            out["load_end"] = os.getloadavg()
            sampler.cancel()
            out["db_peak"] = peak["db"]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await browser.close()
    real.pop("contexts", None)
    out.update(real=real, records=log.records, pushed=log.pushed, contexts=contexts)
    return out


def pages_report(args, p: dict) -> None:
    minutes = p["seconds"] / 60
    print(
        f"\nopen pages for {p['seconds']:.0f} s (load average {p['load_start'][0]:.2f} at the start, "
        f"{p['load_end'][0]:.2f} at the end; sandbox recovering, then {len(p['sweeps'])} sweeps; before: {p['before']})"
    )
    for line in p["sweeps"]:
        print(f"  sweep {line}")
    if args.browser_pages:
        r = p["real"]
        print(
            f"real Chromium: {args.browser_pages} dashboards in {p['contexts']} signed-in contexts (opened in "
            f"{p['browser_open_seconds']:.0f} s): {r['requests'] / args.browser_pages / minutes:.2f} requests per "
            f"open page per minute ({r['requests']} in all: {r['by_path'] or 'none'}), "
            f"{r['streams'] / args.browser_pages / minutes:.2f} stream (re)opens per page per minute, "
            f"answers {r['statuses'] or 'none'}, {r['errors']} console errors"
            f"{': ' + ' | '.join(r['error_texts']) if r['errors'] else ''}"
        )
    for who, label, count in (
        ("like", "browser-like pages", args.like_pages),
        ("browse", "browsing users", args.browsing),
    ):
        if not count:
            continue
        mine = [(kind, ms, status) for w, kind, ms, status in p["records"] if w == who]
        asked = [m for m in mine if m[0] != "stream"]
        statuses: dict = {}
        for _, _, status in mine:
            statuses[status] = statuses.get(status, 0) + 1
        kinds: dict = {}
        for kind, _, _ in mine:
            kinds[kind] = kinds.get(kind, 0) + 1
        pages = [ms for kind, ms, status in asked if kind == "page" and status == 200]
        fetches = [ms for kind, ms, status in asked if kind != "page" and status == 200]
        if who == "like":
            label += f" ({p['like_up']} with their stream open at the start)"
        line = f"{label}: {count}, {len(asked) / count / minutes:.2f} requests per page per minute ({kinds or 'none'})"
        if pages:
            line += f", dashboard p50/p99 {pct(pages, 0.5):.0f}/{pct(pages, 0.99):.0f} ms"
        if fetches:
            line += f", re-fetch p50/p99 {pct(fetches, 0.5):.0f}/{pct(fetches, 0.99):.0f} ms"
        line += f", answers {statuses or 'none'}"
        if who == "like":
            line += f", pushed in events: {p['pushed']}"
        print(line)
    fivexx = sum(1 for *_, s in p["records"] if isinstance(s, int) and s >= 500)
    fivexx += sum(n for s, n in p["real"]["statuses"].items() if s >= 500) if args.browser_pages else 0
    print(
        f"5xx answers in the window: {fivexx}; PostgreSQL connections in use, peak: {p['db_peak']}; "
        f"web CPU {p['cpu']:.1f} s in {p['seconds']:.0f} s"
    )


def run(args, db_name: str, web_pid: int) -> None:
    from tests.fixtures.sandbox import SandboxServer
    from tests.support import wait_for_http

    base = f"http://127.0.0.1:{args.port}"
    sandbox_url = f"http://127.0.0.1:{args.sandbox_port}"
    wait_for_http(f"{sandbox_url}/.well-known/oauth-authorization-server", timeout=30)
    wait_for_http(f"{base}/health/", timeout=60)
    load_before = os.getloadavg()
    sessions, client = seed(args, sandbox_url)
    cookies = [cookie for cookie, _ in sessions]
    levels = [int(x) for x in args.levels.split(",")]

    async def scenario():
        import aiohttp

        out = {"idle": {}, "streams": {}}
        # Every user's dashboard once (the first view: sessions, connections and pools warm).
        warm = await dashboard_load(base, cookies, 10, 0, web_pid, each_once=True)
        out["warm"] = warm
        for level in levels:
            out["idle"][level] = await dashboard_load(base, cookies, level, args.seconds, web_pid, ramp=args.ramp)
        out["db_idle"] = db_connections_in_use(db_name)
        out["rss_idle"] = rss_mb(web_pid)
        streams = Streams(base, sessions, args.streams)
        peak = {"db": 0}

        async def sample():
            while True:
                peak["db"] = max(peak["db"], await asyncio.to_thread(db_connections_in_use, db_name))
                await asyncio.sleep(0.5)

        sampler = asyncio.ensure_future(sample())
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            t0 = time.monotonic()
            await streams.open(session)
            out["open_seconds"] = time.monotonic() - t0
            out["held"] = streams.opened
            out["refused"] = dict(streams.refused)
            await asyncio.sleep(2)
            out["db_streams"] = db_connections_in_use(db_name)
            out["rss_streams"] = rss_mb(web_pid)
            for level in levels:
                out["streams"][level] = await dashboard_load(
                    base, cookies, level, args.seconds, web_pid, ramp=args.ramp
                )
            # The sweep's changes: every connection's broker goes down; one sweep as a worker runs it.
            SandboxServer(args.sandbox_port).set_faults(client["client_id"], outage=True)
            sweep = subprocess.run(
                [sys.executable, "-c",
                 "import django; django.setup(); from django.utils import timezone; "
                 "from connections.models import Connection; from engine.models import EngineState; "
                 "from engine.sweep import sweep_run; "
                 "EngineState.objects.update(next_check_at=timezone.now()); r = sweep_run(); "
                 "from collections import Counter; "
                 "print(r.claimed, 'claimed,', r.checked, 'checked; statuses now:', "
                 "dict(Counter(Connection.objects.values_list('status', flat=True))))"],
                cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            t1 = time.monotonic()
            out["sweep"] = (sweep.stdout.strip() or sweep.stderr.strip()[-300:]).splitlines()[-1:]
            deadline = t1 + args.wait
            while streams.complete() < streams.opened and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            out["complete"] = streams.complete()
            out["complete_seconds"] = time.monotonic() - t1
            out["still_open"] = streams.opened - streams.ended
            out["db_peak"] = peak["db"]
            await streams.close()
        sampler.cancel()
        return out

    if args.browser_pages or args.like_pages or args.browsing:
        if not args.pages_only:
            out = asyncio.run(scenario())
            synthetic_report(args, out, load_before)
        pages = asyncio.run(open_pages(base, sessions, args, client, db_name, web_pid))
        pages_report(args, pages)
        return
    synthetic_report(args, asyncio.run(scenario()), load_before)


def synthetic_report(args, out: dict, load_before) -> None:
    levels = [int(x) for x in args.levels.split(",")]

    print(f"\nbrokerlink pages: {args.users} users x {args.per_user} connections, {args.web_workers} web workers "
          f"(gunicorn + uvicorn, DEBUG off), pool {args.pool}/process, {os.cpu_count()} cores, "
          f"load average before {load_before[0]:.2f} (shared machine)")  # fmt: skip
    warm = out["warm"]
    print(
        f"first view of each user (10 concurrent): {warm['rps']:.0f}/s "
        f"{warm['p50']:.0f}/{warm['p95']:.0f}/{warm['p99']:.0f} ms cpu {warm['cpu_ms']:.1f}; then:"
    )
    print(f"{'dashboard':<22}" + "".join(f"{f'{c} concurrent':>42}" for c in levels))
    splits = []
    for phase, label in (("idle", "no stream open"), ("streams", f"{out['held']} streams open")):
        cells = []
        for level in levels:
            r = out[phase][level]
            err = f" err {r['errors']}" if r["errors"] else ""
            cells.append(f"{r['rps']:.0f}/s {r['p50']:.0f}/{r['p95']:.0f}/{r['p99']:.0f} ms cpu {r['cpu_ms']:.1f}{err}")
        splits.append(f"{label}: " + ", ".join("/".join(map(str, out[phase][lv]["split"])) for lv in levels))
        print(f"{label:<22}" + "".join(f"{c:>42}" for c in cells))
    print(
        f"  (requests/s, p50/p95/p99 latency, web CPU ms per request: 1000 / that = page views per core-second; "
        f"users arrive over {args.ramp:g} s, then {args.seconds:g} s measured)"
    )
    print("  client connections per web worker during each level (streams included): " + "; ".join(splits))
    print(
        f"open streams held: {out['held']} of {args.streams} in {out['open_seconds']:.1f}s, refused: "
        f"{out['refused'] or 'none'}"
    )
    print(
        f"PostgreSQL connections in use (pg_stat_activity, this database): idle {out['db_idle']}, "
        f"with the streams open {out['db_streams']}, peak during streams+load+sweep {out['db_peak']}"
    )
    print(
        f"web RSS (master + workers): {out['rss_idle']:.0f} MB before the streams, {out['rss_streams']:.0f} MB "
        f"with them open"
    )
    print(
        f"sweep: {' '.join(out['sweep'])}; streams that got every change of their user's connections: "
        f"{out['complete']}/{out['held']} within {out['complete_seconds']:.1f}s; still open: {out['still_open']}"
    )


if __name__ == "__main__":
    main()
