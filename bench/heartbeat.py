"""Heartbeat benchmark (not a test): N connections checked by real Celery worker processes,
fed by the real dispatch (the beat's `heartbeat_tick` task and the lanes it sends).

    .venv/bin/python bench/heartbeat.py --connections 10000 --latency-ms 50
    .venv/bin/python bench/heartbeat.py --sizes 1000,10000,100000 --workers 2 --sandbox-cpus 1 --worker-cpus 0

Uses DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/brokerlink_bench, created if
missing; never the test database) and a Celery queue of its own on BENCH_REDIS_URL (default
redis://127.0.0.1:6379/15), loopback only. Starts its own sandbox (uvicorn) and, per size, a
fresh `celery worker --concurrency W` (so peak RSS is that size's), one real grant over HTTP,
one access token per connection (sealed on N connection rows). Per size it measures the raw
client limit (the same aiohttp client on the same endpoint, no database or crypto), then sends
one tick and waits for the cycle's SweepRun to finish, and prints side by side: checks/s, cycle
time, CPU per check of each worker process, sandbox CPU per request, peak RSS per worker
process, SQL statements per check (counted inside the workers, bench/celery_worker.py), and
database bytes added per check and per connection-day (pg_total_relation_size of the engine's
tables before and after), and per table rewritten in place (the connection, its EngineState,
its CheckLog) the row versions and bytes one check rewrites: updates (HOT or not) from
pg_stat_user_tables times the table's average row size, index entries written by non-HOT
updates times the size of an entry of each index (header, keys, line pointer), and heap/index size growth; plus the WAL
PostgreSQL wrote per check (pg_current_wal_lsn() before and after: the whole server's, so
other databases' work on a shared server counts too). CPU is per-process CPU seconds from /proc, so other load on the
machine changes wall times but not these.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CHECKS_PER_DAY = 86400 / 60  # one check a minute


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = url.replace(parts.path, "/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def pinned(cpus: str) -> list[str]:
    if not cpus:
        return []
    if not shutil.which("taskset"):
        sys.exit("taskset not found (util-linux); drop --sandbox-cpus/--worker-cpus")
    return ["taskset", "-c", cpus]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--sizes", default="", help="comma-separated sizes measured in one run, e.g. 1000,10000,100000")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="Celery worker pool processes")
    parser.add_argument("--concurrency", type=int, default=200, help="ENGINE_CONCURRENCY (heartbeats per lane)")
    parser.add_argument("--broker-concurrency", type=int, default=800, help="ENGINE_BROKER_CONCURRENCY")
    parser.add_argument("--lanes", type=int, default=8, help="ENGINE_SWEEP_LANES")
    parser.add_argument("--batch-size", type=int, default=500, help="ENGINE_BATCH_SIZE (the engine's default)")
    parser.add_argument("--cycles", type=int, default=2, help="cycles per size; the last one is measured")
    parser.add_argument("--raw-max", type=int, default=20_000, help="requests in the raw-limit run (at most N)")
    parser.add_argument("--port", type=int, default=9177)
    parser.add_argument("--sandbox-workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--sandbox-cpus", default="", help="taskset CPU list for the sandbox, e.g. 1")
    parser.add_argument("--worker-cpus", default="", help="taskset CPU list for the Celery workers, e.g. 0")
    parser.add_argument("--profile", default="", help="folder: py-spy records each worker process (raw stacks)")
    parser.add_argument(
        "--token-cache-seconds", type=float, default=1.0, help="sandbox token-lookup cache TTL (0 = a query each)"
    )
    parser.add_argument("--debug", action="store_true", help="DJANGO_DEBUG on (the default off, as in production)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip()) or [args.connections]
    if args.profile and not (Path(sys.executable).parent / "py-spy").exists():
        sys.exit("--profile needs py-spy in this venv (not a project dependency): .venv/bin/pip install py-spy")

    from tests.fixtures.sandbox import CONTROL_TOKEN

    db_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/brokerlink_bench")
    if urlsplit(db_url).path.lstrip("/") in ("test", "postgres"):
        sys.exit("refusing to benchmark in the shared test/postgres database; use a dedicated one")
    ensure_database(db_url)
    import socket

    with socket.socket() as probe:  # an earlier run's sandbox still on the port would answer instead
        if probe.connect_ex(("127.0.0.1", args.port)) == 0:
            sys.exit(f"port {args.port} is in use; pass --port")
    sandbox_url = f"http://127.0.0.1:{args.port}"
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=db_url,
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
        CELERY_QUEUE=f"bench-heartbeat-{os.getpid()}",
        TOKEN_ENCRYPTION_KEYS=os.environ.get("TOKEN_ENCRYPTION_KEYS", "b1:" + "B" * 43),
        SANDBOX_BASE_URL=sandbox_url,
        SANDBOX_CONTROL_TOKEN=CONTROL_TOKEN,
        BROKERLINK_VAR_DIR=str(ROOT / "var" / "bench"),
        LOG_LEVEL="WARNING",
        BROKERLINK_ENGINE_CONCURRENCY=str(args.concurrency),
        BROKERLINK_ENGINE_BROKER_CONCURRENCY=str(args.broker_concurrency),
        BROKERLINK_ENGINE_SWEEP_LANES=str(args.lanes),
        BROKERLINK_ENGINE_BATCH_SIZE=str(args.batch_size),
        # Measure how long a cycle takes, even past 60 s, instead of stopping at the budget.
        BROKERLINK_ENGINE_SWEEP_BUDGET_SECONDS="900",
        BROKERLINK_ENGINE_LEASE_SECONDS="900",
        # A measured cycle checks each connection once, even when it takes longer than a minute:
        # nothing checked in it falls due again (the sandbox's interval is a day here).
        SANDBOX_HEARTBEAT_INTERVAL_SECONDS="86400",
        CELERY_TASK_TIME_LIMIT="3600",
        CELERY_TASK_SOFT_TIME_LIMIT="3500",
        DJANGO_DEBUG="1" if args.debug else "0",
        SANDBOX_TOKEN_CACHE_SECONDS=str(args.token_cache_seconds),
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    cmd = [
        *pinned(args.sandbox_cpus), sys.executable, "-m", "uvicorn", "sandbox.asgi:application",
        "--host", "127.0.0.1", "--port", str(args.port), "--workers", str(args.sandbox_workers),
        "--backlog", "4096", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings_sandbox")
    sandbox = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    try:
        run(args, sizes, sandbox_url, sandbox.pid)
    finally:
        os.killpg(sandbox.pid, signal.SIGTERM)
        sandbox.wait(timeout=10)


# --- processes -------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        found = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
        return found
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    pids = [pid]
    for child in children(pid):
        pids += tree(child)
    return pids


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_stats():
    """(pid, name, the fields after the name) of every process's /proc/<pid>/stat."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        yield int(entry.name), stat.split(" (", 1)[1].rsplit(")", 1)[0], stat.rsplit(")", 1)[1].split()


def postgres_cpu_seconds() -> float:
    """CPU seconds of every PostgreSQL server process on this machine (it is shared by the
    benchmark's database only while it runs; the figure is per check, so small), including
    the backends that ended (each task's database connection closes with it): the postmaster
    counts its reaped children's CPU (cutime, cstime)."""
    ticks = sum(sum(int(v) for v in fields[11:15]) for _, name, fields in process_stats() if name == "postgres")
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK"), sum(values) / os.sysconf("SC_CLK_TCK")


MACHINE_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_split() -> dict[str, float]:
    """The machine's CPU seconds so far by kind (/proc/stat), to see where time no measured
    process accounts for went (interrupts, the kernel's network work, a hypervisor's steal)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return {name: v / os.sysconf("SC_CLK_TCK") for name, v in zip(MACHINE_FIELDS, values, strict=False)}


def process_cpu_by_name() -> dict[int, tuple[str, float]]:
    """Every process's (name, CPU seconds so far): the cycle's other consumers by name."""
    ticks = os.sysconf("SC_CLK_TCK")
    return {pid: (name, (int(fields[11]) + int(fields[12])) / ticks) for pid, name, fields in process_stats()}


def others_cpu(before: dict, after: dict, measured: set[int]) -> dict[str, float]:
    """CPU seconds of the processes not measured apart, summed by name, largest first (a
    process that ended during the cycle is missing, one that started counts from zero)."""
    by_name: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        if pid in measured or name == "postgres":
            continue
        spent = seconds - before.get(pid, (name, 0.0))[1]
        if spent > 0:
            by_name[name] = by_name.get(name, 0.0) + spent
    return dict(sorted(by_name.items(), key=lambda item: -item[1]))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_workers(args, sql_dir: Path) -> subprocess.Popen:
    cmd = [
        *pinned(args.worker_cpus), sys.executable, "-m", "celery", "-A", "bench.celery_worker", "worker",
        "--pool=prefork", f"--concurrency={args.workers}", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "--loglevel=WARNING", "-Q", os.environ["CELERY_QUEUE"], "-n", f"bench{os.getpid()}@%h",
    ]  # fmt: skip
    env = dict(os.environ, BENCH_SQL_DIR=str(sql_dir))
    log = open(sql_dir / "worker.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(children(proc.pid)) < args.workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the Celery worker did not start: {(sql_dir / 'worker.log').read_text()[-2000:]}")
        time.sleep(0.2)
    time.sleep(3)  # the pool processes finish importing and the consumer connects
    return proc


# --- database --------------------------------------------------------------------------


def rewritten_tables() -> list[str]:
    """Tables a check rewrites in place (one row per connection): their growth is dead row
    versions that vacuum reclaims, reported apart from growth."""
    from connections.models import Connection
    from engine.models import CheckLog, EngineState

    return [model._meta.db_table for model in (Connection, EngineState, CheckLog)]


def engine_tables() -> list[str]:
    """The tables a check may add rows to: every table of the connections and engine apps
    but those rewritten in place."""
    from django.apps import apps

    rewritten = set(rewritten_tables())
    models = [*apps.get_app_config("connections").get_models(), *apps.get_app_config("engine").get_models()]
    return sorted(
        m._meta.db_table
        for m in models
        if m._meta.db_table not in rewritten and not m._meta.proxy and m._meta.managed
    )


def rewrite_stats(tables: list[str]) -> dict:
    """Per table: updates, HOT updates, heap and index sizes, its average row size and the
    size of one entry in each of its indexes, summed; and the server's WAL position. Statistics are read after a
    pause, since each backend reports its counts within a second of its transaction."""
    from django.db import connection as db

    time.sleep(1.5)
    found: dict = {"tables": {}}
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        for table in tables:
            qn = db.ops.quote_name(table)
            cursor.execute(
                "SELECT n_tup_upd, n_tup_hot_upd, n_live_tup, pg_relation_size(relid), pg_indexes_size(relid) "
                "FROM pg_stat_user_tables WHERE relname = %s",
                [table],
            )
            upd, hot, live, heap, index = cursor.fetchone()
            cursor.execute(f"SELECT coalesce(avg(pg_column_size(t.*)), 0) FROM {qn} AS t")  # noqa: S608
            row_size = cursor.fetchone()[0]
            # A B-tree entry: its 8-byte header and keys (8-byte aligned) plus a 4-byte line pointer.
            cursor.execute(
                "SELECT array_agg(a.attname::text) FROM pg_index i JOIN pg_attribute a "
                "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                "WHERE i.indrelid = %s::regclass GROUP BY i.indexrelid",
                [table],
            )
            entry_size = 0.0
            for (columns,) in cursor.fetchall():
                keys = " + ".join(f"pg_column_size(t.{db.ops.quote_name(c)})" for c in columns)
                cursor.execute(f"SELECT coalesce(avg({keys}), 0) FROM {qn} AS t")  # noqa: S608
                entry_size += 12 + -(-float(cursor.fetchone()[0]) // 8) * 8
            found["tables"][table] = {
                "upd": upd, "hot": hot, "heap": heap, "index": index, "row_size": float(row_size),
                "entry_size": float(entry_size),
            }  # fmt: skip
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        found["wal"] = cursor.fetchone()[0]
    return found


def rewrites_per_check(before: dict, after: dict, checks: int) -> dict:
    """Per table and per check: row versions written, their share HOT, table bytes (updates ×
    average row size), index bytes (non-HOT updates × an entry in every index), heap and
    index size growth; WAL bytes per check."""
    from django.db import connection as db

    tables = {}
    for table, b in before["tables"].items():
        a = after["tables"][table]
        updates, hot = a["upd"] - b["upd"], a["hot"] - b["hot"]
        tables[table] = {
            "updates": updates / checks,
            "hot": hot / updates if updates else 0.0,
            "table": updates * a["row_size"] / checks,
            "index": (updates - hot) * a["entry_size"] / checks,
            "table_growth": (a["heap"] - b["heap"]) / checks,
            "index_growth": (a["index"] - b["index"]) / checks,
        }
    with db.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", [after["wal"], before["wal"]])
        wal = float(cursor.fetchone()[0])
    return {"tables": tables, "wal": wal / checks}


def sql_count(folder: Path) -> int:
    return sum(int(p.read_text() or 0) for p in folder.iterdir() if p.name.isdigit())


def table_bytes(tables: list[str]) -> dict[str, int]:
    from django.db import connection as db

    with db.cursor() as cursor:
        cursor.execute(
            "SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r'",
            [tables],
        )
        return dict(cursor.fetchall())


# --- the run ---------------------------------------------------------------------------


def setup_broker(args, sandbox_url: str):
    import requests

    from accounts.models import User
    from brokers.models import BrokerApp
    from tests.fixtures.sandbox import SandboxServer, pkce_pair
    from tests.support import wait_for_http

    wait_for_http(f"{sandbox_url}/.well-known/oauth-authorization-server", timeout=30)
    sandbox = SandboxServer(args.port)
    sandbox._ok(sandbox.control("POST", "users", {"demo": True}))
    from sandbox.models import SandboxClient

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
    token["expires_in"] = 3600  # no refreshes inside the measured cycle
    sandbox.set_faults(client["client_id"], latency_ms=args.latency_ms)
    user, _ = User.objects.get_or_create(email="bench@example.com")
    app, _ = BrokerApp.objects.update_or_create(
        broker_slug="sandbox", environment="live", defaults={"client_id": client["client_id"]}
    )
    app.client_secret = client["client_secret"]
    app.save()
    return sandbox, client, token, user, app


def connections_add(count: int, start: int, *, token: dict, user, app) -> list[str]:
    """`count` more connections, each with an access token of its own (extra token rows of the
    same grant, written straight into the sandbox's tables: every heartbeat is a token lookup)."""
    import secrets

    from django.utils import timezone

    from connections.broker_client import profile_for
    from connections.models import Connection, ConnectionStatus
    from connections.tokens import connection_apply_token_response
    from engine.models import EngineState
    from sandbox.models import SandboxToken, token_hash

    profile = profile_for("sandbox", "live")
    real = SandboxToken.objects.get(access_token_hash=token_hash(token["access_token"]))
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    for offset in range(0, count, 5000):
        chunk = tokens[offset : offset + 5000]
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
                for value in chunk
            ],
            batch_size=5000,
        )
        rows = []
        for i, value in enumerate(chunk):
            conn = Connection(
                user=user,
                broker_slug="sandbox",
                broker_app=app,
                environment="live",
                account_id=f"bench-{start + offset + i}",
                status=ConnectionStatus.CONNECTED,
            )
            connection_apply_token_response(
                connection=conn, profile=profile, token=dict(token, access_token=value), first_grant=True
            )
            conn.next_check_at = timezone.now() + timezone.timedelta(days=1)
            rows.append(conn)
        Connection.objects.bulk_create(rows, batch_size=5000)
        # bulk_create skips Connection.save(): each row's EngineState is created here.
        EngineState.objects.bulk_create([c.engine_state_get() for c in rows], batch_size=5000)
    return tokens


def _raw_share(url: str, tokens: list[str], concurrency: int) -> tuple[int, float]:
    """One raw-run process: its share of the tokens; (answers that were ok, its CPU seconds)."""
    import resource

    from engine.heartbeat_client import HeartbeatRequest, heartbeats_run

    items = [HeartbeatRequest(key=i, url=url, access_token=t) for i, t in enumerate(tokens)]
    results = heartbeats_run(items, concurrency=concurrency, timeout=30)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return sum(r.ok for r in results), usage.ru_utime + usage.ru_stime


def raw_limit(sandbox_url: str, tokens: list[str], args, sandbox_pids: list[int]) -> dict:
    """The client alone, in as many processes as the cycle's workers, each with as many requests
    in flight as a lane may send to one broker (ENGINE_CONCURRENCY capped by the broker's
    share, BROKER_CONCURRENCY / SWEEP_LANES): the same parallelism without database and crypto."""
    import multiprocessing

    from django.db import connections

    from connections.broker_client import profile_for

    url = sandbox_url + profile_for("sandbox", "live").heartbeat_path
    shares = [tokens[i :: args.workers] for i in range(args.workers)]
    connections.close_all()  # no database socket shared with the forked processes
    cpu0 = sum(cpu_seconds(p) for p in sandbox_pids)
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        t0 = time.perf_counter()
        in_flight = max(1, min(args.concurrency, args.broker_concurrency // args.lanes))
        results = pool.starmap(_raw_share, [(url, share, in_flight) for share in shares])
        seconds = time.perf_counter() - t0
    sandbox_cpu = sum(cpu_seconds(p) for p in sandbox_pids) - cpu0
    client_cpu = sum(cpu for _, cpu in results)
    items = tokens
    return {
        "rate": len(items) / seconds,
        "ok": sum(ok for ok, _ in results),
        "sandbox_ms": sandbox_cpu / len(items) * 1000,
        "client_ms": client_cpu / len(items) * 1000,
    }


def cycle(size: int, args, sandbox_pids: list[int], tables: list[str]) -> dict:
    from django.db import connection as db
    from django.utils import timezone

    from engine.models import EngineState, SweepRun
    from engine.tasks import heartbeat_tick

    with db.cursor() as cursor:  # this size's growth only, from empty tables
        cursor.execute("TRUNCATE " + ", ".join(db.ops.quote_name(t) for t in tables) + " CASCADE")
        for table in rewritten_tables():
            cursor.execute("VACUUM ANALYZE " + db.ops.quote_name(table))
    later = timezone.now() + timezone.timedelta(days=1)
    EngineState.objects.update(next_check_at=later, lease_owner="", lease_until=None)
    rewritten = rewritten_tables()
    tables = [*tables, *rewritten]
    sql_dir = Path(tempfile.mkdtemp(prefix="bench-heartbeat-"))
    workers = start_workers(args, sql_dir)
    pool = children(workers.pid)
    spies = []
    try:
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            for pid in pool:
                out = Path(args.profile) / f"{size}-{pid}.txt"
                spies.append(
                    subprocess.Popen(
                        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--format", "raw",
                         "--rate", "250", "--nonblocking", "--output", str(out)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )
                )  # fmt: skip
            time.sleep(1)
        for n in range(args.cycles):  # the last one is measured; earlier ones fill the check logs
            bytes0 = table_bytes(tables)
            load = os.getloadavg()[0]
            sql0 = sql_count(sql_dir)
            EngineState.objects.update(next_check_at=timezone.now())  # the whole size falls due at once
            rewrites0 = rewrite_stats(rewritten)
            cpu0 = {pid: cpu_seconds(pid) for pid in pool}
            sandbox0 = sum(cpu_seconds(p) for p in sandbox_pids)
            postgres0, machine0 = postgres_cpu_seconds(), machine_busy_seconds()
            split0, others0 = machine_split(), process_cpu_by_name()
            last = SweepRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            t0 = time.perf_counter()
            heartbeat_tick.apply_async()
            run = None
            while time.perf_counter() - t0 < 1200:
                time.sleep(0.5)
                run = SweepRun.objects.filter(pk__gt=last, lanes__gt=0).order_by("pk").first()
                if run and run.lanes_finished >= run.lanes_started > 0 and run.checked + run.deferred >= size:
                    break
                if run and run.lanes_finished >= run.lanes:
                    break
            wall = time.perf_counter() - t0
            postgres_cpu = postgres_cpu_seconds() - postgres0
            machine1 = machine_busy_seconds()
            split1, others1 = machine_split(), process_cpu_by_name()
            busy, elapsed = machine1[0] - machine0[0], machine1[1] - machine0[1]
            time.sleep(1)  # the last lanes' counters are written after their task ends
            run.refresh_from_db()
            cpu = {pid: cpu_seconds(pid) - cpu0[pid] for pid in pool}
            sandbox_cpu = sum(cpu_seconds(p) for p in sandbox_pids) - sandbox0
            bytes1 = table_bytes(tables)
            sql = sql_count(sql_dir) - sql0
            rewrites = rewrites_per_check(rewrites0, rewrite_stats(rewritten), max(1, run.checked))
            print(
                f"  {size:,} cycle {n + 1} rewritten per check: "
                + "; ".join(
                    f"{t} {r['updates']:.2f} upd ({r['hot']:.0%} HOT) = table {r['table']:.0f} B"
                    f" + index {r['index']:.0f} B"
                    f" (size growth {r['table_growth']:.0f} + {r['index_growth']:.0f} B)"
                    for t, r in rewrites["tables"].items()
                )
                + f"; WAL {rewrites['wal']:.0f} B",
                flush=True,
            )
            print(
                f"  {size:,} cycle {n + 1}: {run.checked:,} checked in {(run.duration_ms or 0) / 1000:.1f}s", flush=True
            )
        rss = {pid: peak_rss_mb(pid) for pid in pool}
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=30)
        os.killpg(workers.pid, signal.SIGTERM)
        workers.wait(timeout=60)
        shutil.rmtree(sql_dir, ignore_errors=True)
    checked = max(1, run.checked)
    delta = {t: bytes1.get(t, 0) - bytes0.get(t, 0) for t in tables}
    grew = {t: b for t, b in delta.items() if b and t not in rewritten}
    cycle_s = (run.duration_ms or 0) / 1000
    return {
        "size": size,
        "checked": run.checked,
        "failed": run.failed,
        "lanes": f"{run.lanes_started}/{run.lanes}",
        "cycle_s": cycle_s,
        "wall_s": wall,
        "rate": run.checked / cycle_s if cycle_s else 0.0,
        "cpu_ms": {pid: c / checked * 1000 for pid, c in cpu.items()},
        "cpu_total_ms": sum(cpu.values()) / checked * 1000,
        "sandbox_ms": sandbox_cpu / checked * 1000,
        "postgres_ms": postgres_cpu / checked * 1000,
        "machine_busy": busy / elapsed if elapsed else 0.0,
        "machine_split": {k: split1[k] - split0[k] for k in MACHINE_FIELDS if k not in ("idle", "iowait")},
        "others": others_cpu(others0, others1, set(pool) | set(sandbox_pids)),
        "rss": rss,
        "sql": sql / checked,
        "bytes_check": sum(grew.values()) / checked,
        "grew": grew,
        "rewritten": {t: delta[t] for t in rewritten if t in delta},
        "rewrites": rewrites,
        "load": load,
    }


def run(args, sizes: list[int], sandbox_url: str, sandbox_pid: int) -> None:
    from connections.models import Connection

    sandbox, client, token, user, app = setup_broker(args, sandbox_url)
    sandbox_pids = tree(sandbox_pid)
    Connection.objects.filter(broker_slug="sandbox").delete()
    tables = engine_tables()
    tokens: list[str] = []
    rows = []
    for size in sizes:
        t0 = time.perf_counter()
        tokens += connections_add(size - len(tokens), len(tokens), token=token, user=user, app=app)
        print(f"{size:,} connections ready ({time.perf_counter() - t0:.1f}s to add)", flush=True)
        calls0 = sandbox.counters(client["client_id"])["account_calls"]
        raw_n = min(size, args.raw_max)
        raw = raw_limit(sandbox_url, tokens[:raw_n], args, sandbox_pids)
        result = cycle(size, args, sandbox_pids, tables)
        calls = sandbox.counters(client["client_id"])["account_calls"] - calls0
        result.update(raw=raw, raw_n=raw_n, calls=calls)
        rows.append(result)
        print(
            f"  {size:,}: {result['checked']:,} checked in {result['cycle_s']:.1f}s = {result['rate']:,.0f}/s "
            f"(raw {raw['rate']:,.0f}/s); worker CPU {result['cpu_total_ms']:.3f} ms/check",
            flush=True,
        )
    report(args, rows)


def report(args, rows: list[dict]) -> None:
    print(
        f"\nlatency={args.latency_ms}ms workers={args.workers} lanes={args.lanes} concurrency={args.concurrency} "
        f"broker_concurrency={args.broker_concurrency} batch={args.batch_size} cores={os.cpu_count()} "
        f"sandbox cpus={args.sandbox_cpus or 'shared'} worker cpus={args.worker_cpus or 'shared'} "
        f"sandbox token cache={args.token_cache_seconds}s"
    )
    lines = [
        ("connections", lambda r: f"{r['size']:,}"),
        ("load average before the cycle", lambda r: f"{r['load']:.2f}"),
        ("raw client limit (no DB/crypto)", lambda r: f"{r['raw']['rate']:,.0f} req/s ({r['raw_n']:,} req)"),
        ("raw client CPU per request", lambda r: f"{r['raw']['client_ms']:.3f} ms"),
        ("checked (failed) / lanes started", lambda r: f"{r['checked']:,} ({r['failed']}) / {r['lanes']}"),
        ("cycle time (tick → last lane)", lambda r: f"{r['cycle_s']:.1f} s"),
        ("checks/s", lambda r: f"{r['rate']:,.0f}"),
        ("% of raw limit", lambda r: f"{r['rate'] / r['raw']['rate'] * 100:.0f} %"),
        ("fits a 60 s cycle", lambda r: "yes" if r["cycle_s"] <= 60 and r["checked"] >= r["size"] else "no"),
        (
            "worker CPU per check (each process's share)",
            lambda r: " + ".join(f"{v:.3f}" for v in r["cpu_ms"].values()) + f" = {r['cpu_total_ms']:.3f} ms",
        ),
        ("sandbox CPU per request (cycle / raw)", lambda r: f"{r['sandbox_ms']:.3f} / {r['raw']['sandbox_ms']:.3f} ms"),
        ("PostgreSQL CPU per check (all its processes)", lambda r: f"{r['postgres_ms']:.3f} ms"),
        ("machine CPU busy during the cycle", lambda r: f"{r['machine_busy'] * 100:.0f} % of {os.cpu_count()} cores"),
        (
            "  machine busy core-seconds by kind",
            lambda r: ", ".join(f"{k} {v:.1f}" for k, v in r["machine_split"].items() if v >= 0.05),
        ),
        (
            "  other processes' CPU (top 5, s)",
            lambda r: ", ".join(f"{k} {v:.1f}" for k, v in list(r["others"].items())[:5]) or "none",
        ),
        ("peak RSS per worker process", lambda r: " / ".join(f"{v:.0f}" for v in r["rss"].values()) + " MB"),
        ("SQL statements per check", lambda r: f"{r['sql']:.4f}"),
        ("DB bytes added per check", lambda r: f"{r['bytes_check']:.1f} B"),
        ("  per connection-day (1,440 checks)", lambda r: f"{r['bytes_check'] * CHECKS_PER_DAY / 1024:.1f} KB"),
        ("  tables that grew", lambda r: ", ".join(f"{t} +{b // 1024} KB" for t, b in r["grew"].items()) or "none"),
        (
            "rewritten in place (dead rows vacuumed)",
            lambda r: ", ".join(f"{t} +{b // 1024} KB" for t, b in r["rewritten"].items()),
        ),
        (
            "table rewritten per check (updates × row size)",
            lambda r: ", ".join(f"{t} {v['table']:.0f} B" for t, v in r["rewrites"]["tables"].items()),
        ),
        (
            "index written per check (non-HOT updates)",
            lambda r: ", ".join(f"{t} {v['index']:.0f} B" for t, v in r["rewrites"]["tables"].items()),
        ),
        ("WAL per check (whole server)", lambda r: f"{r['rewrites']['wal']:.0f} B"),
        (
            "sandbox account_calls (raw + cycles)",
            lambda r: f"{r['calls']:,} (expected {r['raw_n'] + args.cycles * r['size']:,})",
        ),
    ]
    width = max(len(name) for name, _ in lines)
    # The lines of many items (names starting with spaces) may overflow the column.
    widths = [len(fmt(r)) for r in rows for name, fmt in lines if "grew" not in name and not name.startswith("  ")]
    col = max(26, *widths)
    for name, fmt in lines:
        print(f"{name:<{width}}  " + "  ".join(f"{fmt(r):>{col}}" for r in rows))
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        ratio = max(last["rss"].values()) / max(first["rss"].values())
        print(f"peak worker RSS {last['size']:,} vs {first['size']:,}: {ratio:.2f}×")


if __name__ == "__main__":
    main()
