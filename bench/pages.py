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

`--browser-pages N` (real-browser mode) then keeps N Chromium dashboards open (Debian's
/usr/bin/chromium through Playwright, one signed-in user each) for `--browser-seconds`, with
the sandbox recovering and one sweep in that window, and prints the requests per open page
per minute they make (the synthetic streams above only listen, so they cannot show polling or
re-fetches), stream (re)opens and console errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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
        "--browser-seconds", type=float, default=120.0, help="real-browser mode: measured window (one sweep in it)"
    )
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
    from connections.models import Connection, ConnectionStatus, EngineState
    from connections.tokens import connection_apply_token_response
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
    "from connections.models import Connection; from connections.engine.models import CircuitBreaker, EngineState; "
    "from connections.engine.sweep import sweep_run; now = timezone.now(); "
    "EngineState.objects.update(next_check_at=now, lease_until=None, lease_owner=''); "
    "CircuitBreaker.objects.filter(state='open').update(next_probe_at=now); r = sweep_run(); "
    "from collections import Counter; "
    "print(r.claimed, 'claimed,', r.checked, 'checked; statuses now:', "
    "dict(Counter(Connection.objects.values_list('status', flat=True))))"
)


async def browser_pages(base: str, sessions, count: int, seconds: float, sandbox_port: int, client: dict) -> dict:
    """Real-browser mode: `count` Chromium dashboards (one signed-in user each) kept open for
    `seconds`, during which the sandbox recovers and one sweep runs (every card changes back).
    Counts what the pages ask the server (XHR/fetch; stream reconnects apart) and their
    console errors: what aiohttp streams that only listen cannot show."""
    from playwright.async_api import async_playwright

    from tests.fixtures.browser import CHROMIUM, CHROMIUM_ARGS
    from tests.fixtures.sandbox import SandboxServer

    seen = {"requests": 0, "streams": 0, "errors": 0, "by_path": {}}
    measuring = False

    def on_request(request) -> None:
        if not measuring:
            return
        path = urlsplit(request.url).path
        if path.endswith("/stream/"):
            seen["streams"] += 1
        elif request.resource_type in ("xhr", "fetch"):
            seen["requests"] += 1
            kind = "card" if path.endswith("/card/") else path
            seen["by_path"][kind] = seen["by_path"].get(kind, 0) + 1

    def on_console(message) -> None:
        if measuring and message.type == "error":
            seen["errors"] += 1
            if len(seen.setdefault("error_texts", [])) < 3:
                seen["error_texts"].append(message.text[:200])

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for cookie, _ids in sessions[:count]:
                name, value = cookie.split("=", 1)
                context = await browser.new_context()
                await context.add_cookies([{"name": name, "value": value, "url": base}])
                page = await context.new_page()
                page.on("request", on_request)
                page.on("console", on_console)
                await page.goto(f"{base}/connections/")
                await page.wait_for_function("() => document.body.dataset.live === 'open'", timeout=60_000)
            measuring = True
            t0 = time.monotonic()
            SandboxServer(sandbox_port).set_faults(client["client_id"], outage=False)
            sweep = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-c", SWEEP_NOW],
                cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            seen["sweep"] = (sweep.stdout.strip() or sweep.stderr.strip()[-300:]).splitlines()[-1:]
            await asyncio.sleep(max(0.0, seconds - (time.monotonic() - t0)))
            seen["seconds"] = time.monotonic() - t0
            measuring = False
        finally:
            await browser.close()
    seen["pages"] = count
    return seen


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
        # Steady state, as a signed-in person meets it: every user's cards rendered once (the
        # first view after a change renders them; later views reuse them, see fragments.py).
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
                 "from connections.models import Connection, EngineState; "
                 "from connections.engine.sweep import sweep_run; "
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
        if args.browser_pages:
            out["browser"] = await browser_pages(
                base, sessions, args.browser_pages, args.browser_seconds, args.sandbox_port, client
            )
        return out

    out = asyncio.run(scenario())
    print(f"\nbrokerlink pages: {args.users} users x {args.per_user} connections, {args.web_workers} web workers "
          f"(gunicorn + uvicorn, DEBUG off), pool {args.pool}/process, {os.cpu_count()} cores, "
          f"load average before {load_before[0]:.2f} (shared machine)")  # fmt: skip
    warm = out["warm"]
    print(
        f"first view of each user (every card rendered, 10 concurrent): {warm['rps']:.0f}/s "
        f"{warm['p50']:.0f}/{warm['p95']:.0f}/{warm['p99']:.0f} ms cpu {warm['cpu_ms']:.1f}; then, cards reused:"
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
    if "browser" in out:
        b = out["browser"]
        minutes = b["seconds"] / 60
        print(
            f"real browsers: {b['pages']} Chromium dashboards open {b['seconds']:.0f} s (one sweep in it: "
            f"{' '.join(b['sweep'])}): {b['requests'] / b['pages'] / minutes:.2f} requests per open page per "
            f"minute ({b['requests']} in all: {b['by_path'] or 'none'}), "
            f"{b['streams'] / b['pages'] / minutes:.2f} stream (re)opens per page per minute, "
            f"{b['errors']} console errors{': ' + ' | '.join(b['error_texts']) if b['errors'] else ''}"
        )


if __name__ == "__main__":
    main()
