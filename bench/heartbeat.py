"""Heartbeat benchmark (not a test): N connections, one full sweep, against a sandbox with latency.

    .venv/bin/python bench/heartbeat.py --connections 10000 --latency-ms 50

Uses DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/brokerlink_bench, created if
missing; never the test database). Starts its own sandbox (uvicorn, one process: the account
endpoint is an async view), creates one
real grant over HTTP and stores its tokens, sealed, on N connection rows, then measures:
checks/s over the whole sweep, p50/p99 check time, SQL queries per check, peak memory of
this (worker) process, and the raw limit: the same aiohttp client on the same endpoint with
no database or crypto.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = url.replace(parts.path, "/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--port", type=int, default=9177)
    parser.add_argument("--sandbox-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument(
        "--token-cache-seconds",
        type=float,
        default=1.0,
        help="sandbox token-lookup cache TTL (0 = one query per request)",
    )
    parser.add_argument(
        "--shared-token",
        action="store_true",
        help="every connection holds the same access token (default: one token each)",
    )
    parser.add_argument("--debug", action="store_true", help="DJANGO_DEBUG on (the default off, as in production)")
    args = parser.parse_args()

    from tests.fixtures.sandbox import CONTROL_TOKEN

    db_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/brokerlink_bench")
    if urlsplit(db_url).path.lstrip("/") in ("test", "postgres"):
        sys.exit("refusing to benchmark in the shared test/postgres database; use a dedicated one")
    ensure_database(db_url)
    sandbox_url = f"http://127.0.0.1:{args.port}"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=db_url,
        REDIS_URL="",
        TOKEN_ENCRYPTION_KEYS=os.environ.get("TOKEN_ENCRYPTION_KEYS", "b1:" + "B" * 43),
        SANDBOX_BASE_URL=sandbox_url,
        SANDBOX_CONTROL_TOKEN=CONTROL_TOKEN,
        BROKERLINK_VAR_DIR=str(ROOT / "var" / "bench"),
        LOG_LEVEL="WARNING",
        BROKERLINK_ENGINE_CONCURRENCY=str(args.concurrency),
        BROKERLINK_ENGINE_BATCH_SIZE=str(args.batch_size),
        BROKERLINK_ENGINE_SWEEP_BUDGET_SECONDS="900",
        BROKERLINK_ENGINE_LEASE_SECONDS="900",
        DJANGO_DEBUG="1" if args.debug else "0",
        SANDBOX_TOKEN_CACHE_SECONDS=str(args.token_cache_seconds),
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    cmd = [
        sys.executable, "-m", "uvicorn", "sandbox.asgi:application", "--host", "127.0.0.1",
        "--port", str(args.port), "--workers", str(args.sandbox_workers), "--backlog", "4096",
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="sandbox.standalone_settings")
    sandbox = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        run(args, sandbox_url, sandbox.pid)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)


def cpu_seconds(pid: int | None = None) -> float:
    """user + system CPU seconds of a process (this one by default)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args, sandbox_url: str, sandbox_pid: int) -> None:
    import requests
    from django.db import connection as db
    from django.utils import timezone

    from accounts.models import User
    from brokers.models import BrokerApp
    from connections.broker_client import profile_for
    from connections.engine.checkstore import rings_for
    from connections.engine.heartbeat_client import HeartbeatRequest, heartbeats_run
    from connections.engine.models import CheckLog, CheckTally
    from connections.engine.sweep import sweep_run
    from connections.models import Connection, ConnectionStatus
    from connections.tokens import connection_apply_token_response
    from tests.fixtures.sandbox import SandboxServer, pkce_pair
    from tests.support import wait_for_http

    load_before = os.getloadavg()[0]
    wait_for_http(f"{sandbox_url}/.well-known/oauth-authorization-server", timeout=30)
    sandbox = SandboxServer(args.port)
    sandbox._ok(sandbox.control("POST", "users", {"demo": True}))
    from sandbox.models import SandboxClient, SandboxToken, token_hash

    SandboxClient.objects.filter(name="bench").delete()  # earlier runs' clients, grants and tokens
    client = sandbox.create_client(name="bench")
    verifier, challenge = pkce_pair()
    code = sandbox.browser().authorize(client, code_challenge=challenge).code
    token = requests.post(
        f"{sandbox_url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client["redirect_uris"][0],
            "code_verifier": verifier,
        },
        auth=(client["client_id"], client["client_secret"]),
        timeout=10,
    ).json()
    token["expires_in"] = 3600  # no refreshes inside the measured sweep
    sandbox.set_faults(client["client_id"], latency_ms=args.latency_ms)

    Connection.objects.filter(broker_slug="sandbox").delete()
    user, _ = User.objects.get_or_create(email="bench@example.com")
    app, _ = BrokerApp.objects.update_or_create(
        broker_slug="sandbox", environment="live", defaults={"client_id": client["client_id"]}
    )
    app.client_secret = client["client_secret"]
    app.save()
    profile = profile_for("sandbox", "live")
    t0 = time.perf_counter()
    # One access token per connection, as in real life (every heartbeat is a token lookup at
    # the broker): extra token rows of the same grant, written straight into the sandbox's tables.
    access_tokens = [token["access_token"]] * args.connections
    if not args.shared_token:
        import secrets

        real = SandboxToken.objects.get(access_token_hash=token_hash(token["access_token"]))
        access_tokens = [secrets.token_urlsafe(32) for _ in range(args.connections)]
        SandboxToken.objects.bulk_create(
            [
                SandboxToken(
                    client_id=real.client_id,
                    grant_id=real.grant_id,
                    access_token_hash=token_hash(value),
                    scope=real.scope,
                    issued_at=real.issued_at,
                    access_expires_at=real.access_expires_at,
                )
                for value in access_tokens
            ],
            batch_size=2000,
        )
    rows = []
    for i in range(args.connections):
        conn = Connection(
            user=user,
            broker_slug="sandbox",
            broker_app=app,
            environment="live",
            account_id=f"bench-{i}",
            status=ConnectionStatus.CONNECTED,
        )
        connection_apply_token_response(
            connection=conn, profile=profile, token=dict(token, access_token=access_tokens[i]), first_grant=True
        )
        conn.next_check_at = timezone.now()
        rows.append(conn)
    Connection.objects.bulk_create(rows, batch_size=2000)
    print(f"created {args.connections} connections in {time.perf_counter() - t0:.1f}s")

    # Raw limit: the same client and endpoint, no database, no crypto.
    url = f"{sandbox_url}{profile.heartbeat_path}"
    items = [HeartbeatRequest(key=i, url=url, access_token=access_tokens[i]) for i in range(args.connections)]
    t0, sandbox_cpu0 = time.perf_counter(), cpu_seconds(sandbox_pid)
    raw = heartbeats_run(items, concurrency=args.concurrency, timeout=30)
    raw_seconds = time.perf_counter() - t0
    sandbox_cpu_raw = cpu_seconds(sandbox_pid) - sandbox_cpu0
    raw_ok = sum(r.ok for r in raw)
    raw_lat = sorted(r.latency_ms for r in raw)
    counter = {"n": 0}

    def count(execute, sql, params, many, context):
        counter["n"] += 1
        return execute(sql, params, many, context)

    Connection.objects.update(next_check_at=timezone.now())
    CheckLog.objects.all().delete()
    CheckTally.objects.all().delete()
    with db.execute_wrapper(count):
        t0, cpu0, sandbox_cpu0 = time.perf_counter(), cpu_seconds(), cpu_seconds(sandbox_pid)
        run_ = sweep_run()
        seconds = time.perf_counter() - t0
        sweep_cpu, sandbox_cpu = cpu_seconds() - cpu0, cpu_seconds(sandbox_pid) - sandbox_cpu0
    # Checks are stored in each connection's check log (engine.checkstore): this sweep's are its last.
    ids = list(Connection.objects.filter(broker_slug="sandbox").values_list("pk", flat=True))
    swept = [c for ring in rings_for(ids).values() for c in ring.checks[-1:]]
    lat = sorted(c.latency_ms for c in swept if c.latency_ms is not None)
    ok = sum(c.ok for c in swept)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def pct(values, p):
        return values[min(len(values) - 1, int(len(values) * p))] if values else None

    print(
        f"\nconnections={args.connections} latency={args.latency_ms}ms concurrency={args.concurrency} "
        f"batch={args.batch_size} cores={os.cpu_count()} tokens={'shared' if args.shared_token else 'one each'} "
        f"sandbox token cache={args.token_cache_seconds}s load average before={load_before:.2f}"
    )
    print(
        f"raw aiohttp (no DB/crypto): {args.connections / raw_seconds:,.0f} req/s, {raw_ok} ok, "
        f"p50 {statistics.median(raw_lat)} ms, p99 {pct(raw_lat, 0.99)} ms, {raw_seconds:.1f}s"
    )
    print(
        f"sweep: {run_.checked} checked ({ok} ok) in {seconds:.1f}s = {run_.checked / seconds:,.0f} checks/s, "
        f"{run_.batches} batches"
    )
    print(f"check time p50 {pct(lat, 0.5)} ms, p99 {pct(lat, 0.99)} ms")
    print(f"SQL queries: {counter['n']} = {counter['n'] / max(1, run_.checked):.3f} per check")
    print(f"peak memory of the sweeping process: {peak_mb:.0f} MB")
    print(
        f"CPU: sweep process {sweep_cpu:.1f}s = {sweep_cpu / max(1, run_.checked) * 1000:.2f} ms per check; "
        f"sandbox {sandbox_cpu:.1f}s during the sweep, {sandbox_cpu_raw / args.connections * 1000:.2f} ms "
        f"per request in the raw run"
    )
    calls = sandbox.counters(client["client_id"])["account_calls"]
    print(f"sandbox account_calls counter: {calls} (expected {2 * args.connections}: raw + sweep)")
    print(f"fits a 60 s cycle: {'yes' if seconds < 60 else 'no'}")


if __name__ == "__main__":
    main()
