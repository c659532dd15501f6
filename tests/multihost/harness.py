"""brokerlink on several test hosts (network namespaces, see netns.py), started the way
docs/operations.md says for several machines: one PostgreSQL and one Redis of their own, the
sandbox broker alone on its host, and web, two workers and beat sharing `DATABASE_URL`,
`REDIS_URL`, `TOKEN_ENCRYPTION_KEYS` and `DJANGO_SECRET_KEY`.

The test process itself stays in the root namespace, where none of these addresses exist; it
observes through an *agent* (`tests/multihost/agent.py`), a Django process on the `ctl` host,
whose links are never cut. `cluster.call("checks", ids)` runs a function of
`tests/multihost/probe.py` there and returns its JSON answer.

Timings are compressed (`TIME_SCALE`): a 60 s cycle is 2 s, so "three minutes" is 6 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path

from tests.fixtures.sandbox import CONTROL_TOKEN  # the control token SandboxServer sends
from tests.multihost import netns
from tests.support import PYTHON, ROOT, wait_for

BIN = Path(PYTHON).parent
TIME_SCALE = 30  # production seconds per test second
INTERVAL = 60 // TIME_SCALE  # the heartbeat cycle (HEARTBEAT_INTERVAL_SECONDS), 2 s
PG_PORT, REDIS_PORT, BROKER_PORT, WEB_PORT = 5432, 6379, 9100, 8000
METRICS_TOKEN = "multihost-metrics-token"

HOSTS = {
    "db": ["db"],
    "redis": ["redis"],
    "broker": ["broker"],
    "web": ["db", "redis", "broker", "front"],
    "worker-a": ["db", "redis", "broker"],
    "worker-b": ["db", "redis", "broker"],
    "beat": ["db", "redis", "broker"],
    "ctl": ["db", "redis", "broker", "front"],
}
DB = netns.address("db", "db")
REDIS = netns.address("redis", "redis")
BROKER = netns.address("broker", "broker")
WEB = netns.address("web", "front")

# The engine's settings, compressed like the cycle (conf.py defaults ÷ TIME_SCALE where the
# scenario depends on them; the write retry stays long enough to outlast a database restart).
ENGINE_ENV = {
    "HEARTBEAT_INTERVAL_SECONDS": str(INTERVAL),
    "SANDBOX_HEARTBEAT_INTERVAL_SECONDS": str(INTERVAL),
    "OPS_BEAT_TICK_SECONDS": "1",
    "HEALTH_FRESH_SECONDS": "5",
    "BROKERLINK_ENGINE_LEASE_SECONDS": "4",
    "BROKERLINK_ENGINE_HTTP_TIMEOUT": "3",
    "BROKERLINK_ENGINE_SWEEP_BUDGET_SECONDS": "1.5",
    "BROKERLINK_ENGINE_SWEEP_LOOKAHEAD_SECONDS": "0",
    "BROKERLINK_ENGINE_SWEEP_LANES": "2",
    "BROKERLINK_ENGINE_BATCH_SIZE": "4",
    "BROKERLINK_ENGINE_LANE_CONNECTIONS": "4",
    "BROKERLINK_ENGINE_REFRESH_THREADS": "2",
    "BROKERLINK_ENGINE_REFRESH_WAIT_SECONDS": "1",
    "BROKERLINK_ENGINE_REFRESH_DEADLINE_SECONDS": "6",
    "BROKERLINK_ENGINE_WRITE_RETRY_SECONDS": "20",
    "BROKERLINK_ENGINE_OVERDUE_GRACE_SECONDS": "4",
}


def _postgres_bin(name: str) -> str:
    import glob

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise FileNotFoundError(f"PostgreSQL's {name} is not installed")
    return found[-1]


class Process:
    """One process on one host, its output in the host's log file."""

    def __init__(self, cluster: Cluster, host: str, name: str, cmd: list[str], env: dict[str, str]):
        self.host, self.name = host, name
        self.log_path = cluster.root / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                [*cluster.net.exec_prefix(host), *cmd],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


class Agent:
    """The observer on the `ctl` host: JSON lines in, `@@ {json}` lines out."""

    MARK = "@@ "

    def __init__(self, cluster: Cluster, env: dict[str, str]):
        self.log_path = cluster.root / "agent.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [*cluster.net.exec_prefix("ctl"), PYTHON, "-m", "tests.multihost.agent"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._lock = threading.Lock()

    def call(self, function: str, *args, **kwargs):
        with self._lock:
            assert self.popen.poll() is None, f"the agent exited: {self.log_path.read_text(errors='replace')[-3000:]}"
            self.popen.stdin.write(json.dumps({"fn": function, "args": args, "kwargs": kwargs}) + "\n")
            self.popen.stdin.flush()
            while True:
                line = self.popen.stdout.readline()
                if not line:
                    raise RuntimeError(f"the agent died: {self.log_path.read_text(errors='replace')[-3000:]}")
                if line.startswith(self.MARK):
                    answer = json.loads(line[len(self.MARK) :])
                    break
        if "error" in answer:
            raise RuntimeError(f"agent {function}: {answer['error']}")
        return answer["result"]

    def stop(self) -> None:
        if self.popen.poll() is None:
            with suppress(BrokenPipeError, OSError):
                self.popen.stdin.close()
            try:
                self.popen.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()


class Cluster:
    def __init__(self, secrets: dict[str, str]):
        self.root = Path(tempfile.mkdtemp(prefix=f"blmh-{os.getpid()}-"))
        self.net = netns.Network()
        self.secrets = secrets
        self.processes: dict[str, Process] = {}
        self.agent: Agent | None = None
        self.world: dict = {}
        self.pgdata = self.root / "pgdata"

    # --- environment -------------------------------------------------------------------
    def app_env(self, host: str, **overrides: str) -> dict[str, str]:
        """What /etc/brokerlink.env holds on every machine, plus the host's own folder."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "BROKERLINK_", "PYTEST"))}
        var = self.root / host
        var.mkdir(exist_ok=True)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "DJANGO_ENV": "development",
                "DATABASE_URL": f"postgresql://postgres@{DB}:{PG_PORT}/postgres",
                "REDIS_URL": f"redis://{REDIS}:{REDIS_PORT}/0",
                "CELERY_QUEUE": "celery",
                "CACHE_KEY_PREFIX": "mh",
                "TOKEN_ENCRYPTION_KEYS": self.secrets["TOKEN_ENCRYPTION_KEYS"],
                "DJANGO_SECRET_KEY": self.secrets["DJANGO_SECRET_KEY"],
                "SANDBOX_BASE_URL": f"http://{BROKER}:{BROKER_PORT}",
                "SANDBOX_CONTROL_TOKEN": CONTROL_TOKEN,
                "OUTBOUND_DEVELOPMENT_NETWORKS": netns.NETWORK,
                "SITE_URL": f"http://{WEB}:{WEB_PORT}",
                "DJANGO_ALLOWED_HOSTS": WEB,
                "METRICS_TOKEN": METRICS_TOKEN,
                "BROKERLINK_VAR_DIR": str(var),
                "PYTHONUNBUFFERED": "1",
                **ENGINE_ENV,
            }
        )
        env.update(overrides)
        return env

    def start_process(self, host: str, name: str, cmd: list[str], env: dict[str, str]) -> Process:
        process = Process(self, host, name, cmd, env)
        self.processes[name] = process
        return process

    def run(self, host: str, cmd: list[str], env: dict[str, str], timeout: float = 120) -> None:
        result = subprocess.run(
            [*self.net.exec_prefix(host), *cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{host}: {' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")

    # --- servers -----------------------------------------------------------------------
    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        cmd = ["runuser", "-u", "postgres", "--", _postgres_bin("pg_ctl"), "-D", str(self.pgdata), *args]
        result = subprocess.run([*self.net.exec_prefix("db"), *cmd], capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"pg_ctl {args[-1]}: {result.stdout} {result.stderr}")

    def db_start(self) -> None:
        self._pg_ctl(
            "-l",
            str(self.root / "postgres.log"),
            "-w",
            "-t",
            "30",
            "-o",
            f"-p {PG_PORT} -k {self.pgdata} -c listen_addresses={DB} -c fsync=off -c max_connections=60",
            "start",
        )

    def db_stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop", check=False)

    def db_init(self) -> None:
        self.pgdata.mkdir()
        shutil.chown(self.root, "postgres", "postgres")
        shutil.chown(self.pgdata, "postgres", "postgres")
        subprocess.run(
            ["runuser", "-u", "postgres", "--", _postgres_bin("initdb"), "-D", str(self.pgdata), "-A", "trust"]
            + ["-U", "postgres", "--no-sync"],
            check=True,
            capture_output=True,
        )
        with open(self.pgdata / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {netns.NETWORK} trust\n")
        self.db_start()

    def start(self) -> None:
        started = time.monotonic()
        netns.leftovers_remove()
        self.net.build(HOSTS)
        os.chmod(self.root, 0o755)  # noqa: S103 - postgres (another user) reaches its data folder inside
        self.db_init()
        self.start_process(
            "redis",
            "redis",
            ["redis-server", "--port", str(REDIS_PORT), "--bind", REDIS, "--save", "", "--appendonly", "no"]
            + ["--protected-mode", "no", "--dir", str(self.root)],
            dict(os.environ),
        )
        # The release step (once per deploy) and the broker's own database, side by side.
        broker_env = self.app_env(
            "broker",
            DATABASE_URL=f"sqlite:///{self.root / 'broker' / 'sandbox.sqlite3'}",
            REDIS_URL="",
            DJANGO_ALLOWED_HOSTS=BROKER,
        )
        errors: list[Exception] = []

        def migrate(host: str, env: dict[str, str]) -> None:
            try:
                self.run(host, [PYTHON, "manage.py", "migrate", "--noinput"], env)
            except Exception as exc:  # noqa: BLE001 - raised below
                errors.append(exc)

        threads = [
            threading.Thread(target=migrate, args=("ctl", self.app_env("ctl"))),
            threading.Thread(target=migrate, args=("broker", broker_env)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        self.start_process(
            "broker",
            "broker",
            [PYTHON, "manage.py", "sandbox_serve", "--host", BROKER, "--port", str(BROKER_PORT)],
            broker_env,
        )
        self.agent = Agent(self, self.app_env("ctl"))
        self.call("wait_http", f"http://{BROKER}:{BROKER_PORT}/.well-known/oauth-authorization-server")
        print(f"multihost: servers and migrations ready in {seconds_since(started)} s")
        self.start_app()
        print(f"multihost: every host running in {seconds_since(started)} s")

    def start_app(self) -> None:
        """web, worker-a, worker-b and beat, with the commands of docs/operations.md."""
        self.start_process(
            "web",
            "web",
            [str(BIN / "gunicorn"), "config.asgi:application", "-k", "uvicorn_worker.UvicornWorker"]
            + ["--bind", f"0.0.0.0:{WEB_PORT}", "--workers", "1", "--graceful-timeout", "20"],
            self.app_env("web", DB_POOL_MAX_SIZE="8"),
        )
        for host in ("worker-a", "worker-b"):
            self.start_process(
                host,
                host,
                [PYTHON, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "--concurrency=1"]
                + ["-n", f"{host}@%h"],
                self.app_env(host),
            )
        self.start_process(
            "beat", "beat", [PYTHON, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO"], self.app_env("beat")
        )
        self.call("wait_http", f"http://{WEB}:{WEB_PORT}/health/")
        for host in ("worker-a", "worker-b"):
            self.wait_log(host, " ready.", timeout=60)
        self.wait_log("beat", "beat: Starting", timeout=60)

    # --- observing ---------------------------------------------------------------------
    def call(self, function: str, *args, **kwargs):
        assert self.agent is not None
        return self.agent.call(function, *args, **kwargs)

    def log(self, name: str) -> str:
        return self.processes[name].log()

    def wait_log(self, name: str, needle: str, *, timeout: float = 30, after: int = 0) -> None:
        """Wait until `needle` appears in a process's log after character `after`."""
        process = self.processes[name]

        def seen():
            assert process.alive(), f"{name} exited:\n{process.log()[-3000:]}"
            return needle in process.log()[after:]

        wait_for(seen, timeout=timeout, interval=0.1, what=f"{needle!r} in {name}'s log")

    def host_of_pid(self, pid: int) -> str | None:
        for host in HOSTS:
            if str(pid) in netns.ip("netns", "pids", self.net.ns(host), check=False).stdout.split():
                return host
        return None

    def tails(self, chars: int = 2500) -> str:
        parts = [f"--- {name} ---\n{p.log()[-chars:]}" for name, p in self.processes.items()]
        if self.agent is not None and self.agent.log_path.exists():
            parts.append(f"--- agent ---\n{self.agent.log_path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    # --- cleanup -----------------------------------------------------------------------
    def close(self) -> None:
        with suppress(Exception):
            self.net.heal_all()
        if self.agent is not None:
            with suppress(Exception):
                self.agent.stop()
        for process in self.processes.values():
            with suppress(ProcessLookupError):
                os.killpg(process.popen.pid, signal.SIGKILL)  # the hosts go away: nothing to shut down warmly
        for process in self.processes.values():
            with suppress(Exception):
                process.popen.wait(timeout=10)
        with suppress(Exception):
            self.db_stop("immediate")
        self.net.close()  # SIGKILLs whatever is left inside, deletes every namespace
        shutil.rmtree(self.root, ignore_errors=True)


def seconds_since(start: float) -> float:
    return round(time.monotonic() - start, 1)
