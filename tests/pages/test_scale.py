"""More open live pages than the database allows connections.

brokerlink runs as a real server (uvicorn) as a PostgreSQL role allowed only ROLE_LIMIT
connections, with a pool of POOL connections. The test opens STREAMS live pages (five times
the role's limit) and, while they are open, the dashboard and readiness still answer 200;
a sweep (in a subprocess, as a worker runs it, as the same limited role) still runs, and
every open page receives the change it made to each connection. One page over the per-user
cap is answered 429 "Too many open pages", not a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone

from connections.models import Connection, ConnectionStatus
from tests import support
from tests.harness import BrokerlinkServer
from tests.support import PYTHON, ROOT, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

ROLE_LIMIT = 8
POOL = 4
STREAMS = 40
CONNECTIONS = 3


@pytest.fixture
def limited_role():
    """A login role allowed ROLE_LIMIT connections, with the test database's tables; its URL."""
    name = f"brokerlink_limited_{os.getpid()}"
    admin_url = support.test_database_url()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
            admin.execute(f'DROP OWNED BY "{name}"')  # left over by an interrupted run
        admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        admin.execute(f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT {ROLE_LIMIT}')
        admin.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{name}"')
        admin.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{name}"')
    yield admin_url.replace("postgresql://postgres@", f"postgresql://{name}@"), name
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,))
        admin.execute(f'DROP OWNED BY "{name}"')
        admin.execute(f'DROP ROLE "{name}"')


def _role_connections(name: str) -> int:
    with psycopg.connect(support.test_database_url(), autocommit=True) as admin:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (name,)).fetchone()[0]


def _session_cookie(user) -> str:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


async def _scenario(base: str, cookie: str, ids: set[str], role: str, sweep_env: dict) -> dict:
    import aiohttp

    headers = {"Cookie": cookie}
    received: list[set[str]] = [set() for _ in range(STREAMS)]
    opened = asyncio.Semaphore(0)
    out: dict = {}

    async def stream(session, i):
        async with session.get(f"{base}/connections/stream/", headers=headers) as resp:
            assert resp.status == 200, resp.status
            await resp.content.readuntil(b"event: hello")
            opened.release()
            async for line in resp.content:
                # conn-<id> ("re-fetch me") or card-<id> (the card itself): either tells the page.
                if line.startswith((b"event: conn-", b"event: card-")):
                    received[i].add(line[len(b"event: conn-") :].strip().decode())

    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        tasks = [asyncio.ensure_future(stream(session, i)) for i in range(STREAMS)]
        async with asyncio.timeout(60):
            for _ in range(STREAMS):
                await opened.acquire()
        out["role_connections_with_streams"] = await asyncio.to_thread(_role_connections, role)

        async def get(path):
            async with session.get(f"{base}{path}", headers=headers, allow_redirects=False) as resp:
                return resp.status, await resp.text()

        pages = await asyncio.gather(*(get("/connections/") for _ in range(10)), get("/health/ready/"))
        out["page_statuses"] = [status for status, _ in pages]
        out["ready"] = pages[-1][1]
        over = await get("/connections/stream/")
        out["over_cap"] = over

        sweep = await asyncio.to_thread(
            subprocess.run,
            [PYTHON, "-c", "import django; django.setup(); from tests.engine.cycle import run_one_cycle_in_process; "
             "r = run_one_cycle_in_process(); print('claimed', r.claimed)"],
            cwd=ROOT, env=sweep_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        out["sweep"] = (sweep.returncode, sweep.stdout, sweep.stderr[-2000:])
        with contextlib.suppress(TimeoutError):  # the assertions below say what was missing
            await support.wait_for_async(lambda: all(ids <= got for got in received), timeout=20, what="every change")
        out["received"] = received
        out["streams_with_every_change"] = sum(1 for got in received if ids <= got)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return out


def test_more_open_pages_than_database_connections(user, limited_role):
    url, role = limited_role
    now = timezone.now()
    connections = [
        Connection(
            user=user,
            broker_slug="sandbox",
            account_id=f"ACC{i}",
            account_number_masked=f"••{i:04d}",
            status=ConnectionStatus.CONNECTED,
            access_expires_at=now + timedelta(hours=1),
            last_success_at=now,
            health_score=100,
            quality="excellent",
            next_check_at=now - timedelta(seconds=1),
        )
        for i in range(CONNECTIONS)
    ]
    for connection in connections:
        connection.access_token = f"token-{connection.account_id}"  # sealed by the vault field
        connection.save()
    ids = {str(c.pk) for c in connections}
    cookie = _session_cookie(user)
    # The broker is unreachable (nothing listens on port 1): every check fails, which every
    # open page must see.
    sweep_env = subprocess_env(DATABASE_URL=url, SANDBOX_BASE_URL="http://127.0.0.1:1/sandbox")
    server = BrokerlinkServer.start(
        DATABASE_URL=url,
        DB_POOL_MAX_SIZE=str(POOL),
        DB_POOL_MIN_SIZE="1",
        LIVE_MAX_STREAMS_PER_USER=str(STREAMS),
    )
    try:
        with ThreadPoolExecutor(1) as pool:
            out = pool.submit(asyncio.run, _scenario(server.url, cookie, ids, role, sweep_env)).result()
    finally:
        server.stop()

    assert STREAMS > ROLE_LIMIT
    # Every page held open, using at most the pool's connections (+1 for the sandbox's own
    # mounted views, none running here) while they wait.
    assert out["role_connections_with_streams"] <= POOL
    assert out["page_statuses"] == [200] * 11, out["page_statuses"]
    assert '"status": "healthy"' in out["ready"] or '"status": "degraded"' in out["ready"]
    status, body = out["over_cap"]
    assert status == 429 and "Too many open pages" in body
    returncode, stdout, stderr = out["sweep"]
    assert returncode == 0, stderr
    assert f"claimed {CONNECTIONS}" in stdout
    assert out["streams_with_every_change"] == STREAMS, (out["received"][:3], ids)
    assert not Connection.objects.filter(pk__in=ids, status=ConnectionStatus.CONNECTED).exists()
