"""`make run` as a new user meets it: a fresh clone with no PostgreSQL or Redis configured
prints a URL and a login, serves the login page, shows "My connections" after signing in,
runs web + worker + beat, and stops all three on Ctrl-C.

The clone borrows this checkout's virtualenv (a symlink, with the lock files dated before
it) so the test measures the app, not a download.
"""

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support import ROOT, free_port, wait_for, wait_for_http

pytestmark = pytest.mark.slow

# Variables the test process has that a fresh laptop does not.
NOT_ON_A_FRESH_MACHINE = {
    "DATABASE_URL",
    "REDIS_URL",
    "DJANGO_SETTINGS_MODULE",
    "TOKEN_ENCRYPTION_KEYS",
    "DJANGO_SECRET_KEY",
    "BROKERLINK_VAR_DIR",
    "CELERY_QUEUE",
    "CACHE_KEY_PREFIX",
    "SITE_URL",
    "SANDBOX_BASE_URL",
    "PORT",
    "BROKERLINK_TEST_RUN_ID",
    "DJANGO_ENV",
    "SANDBOX_CONTROL_TOKEN",
}


@pytest.fixture
def fresh_clone(tmp_path):
    clone = tmp_path / "brokerlink"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    for lock in ("requirements.txt", "requirements-dev.txt"):
        os.utime(clone / lock, (0, 0))
    return clone


def test_make_run_on_a_fresh_clone(fresh_clone: Path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in NOT_ON_A_FRESH_MACHINE}
    log_path = fresh_clone / "make-run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=fresh_clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    output = lambda: log_path.read_text(errors="replace")  # noqa: E731
    try:
        login = wait_for(
            lambda: re.search(r"Sign in with\s+(\S+)\s+/\s+(\S+)", output()), timeout=60, what="printed login"
        )
        email, password = login.group(1), login.group(2)
        assert f"http://127.0.0.1:{port}/" in output()
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/accounts/login/", timeout=30, process=proc)

        browser = requests.Session()
        page = browser.get(f"{base}/accounts/login/", timeout=10)
        assert page.status_code == 200
        token = browser.cookies["csrftoken"]
        signed_in = browser.post(
            f"{base}/accounts/login/",
            data={"login": email, "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{base}/accounts/login/"},
            timeout=10,
        )
        assert signed_in.status_code == 200
        assert "My connections" in signed_in.text

        # Worker and beat run too, on the embedded broker: beat's first tick is executed by the worker.
        wait_for(
            lambda: "ops.tasks.beat_tick" in output() and "succeeded" in output(),
            timeout=40,
            what="beat tick executed by the worker",
        )
        env_file = (fresh_clone / ".env").read_text()
        assert "TOKEN_ENCRYPTION_KEYS=k1:" in env_file and "DJANGO_SECRET_KEY=" in env_file
        status = subprocess.run(["git", "status", "--porcelain"], cwd=fresh_clone, capture_output=True, text=True)
        assert ".env" not in status.stdout.split()  # never committed: ignored
    except BaseException:
        print(output()[-5000:])
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground group
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
    # Ctrl-C stopped all three: nothing from the clone is left running (once they have exited).
    def leftovers() -> list[str]:
        return subprocess.run(["pgrep", "-f", str(fresh_clone)], capture_output=True, text=True).stdout.split()

    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not leftovers(), timeout=30, what="every process of the clone exited")
    assert leftovers() == [], output()[-3000:]
    for name in ("web.1", "worker.1", "beat.1"):
        assert re.search(rf"{re.escape(name)} stopped", output()), output()[-3000:]


def test_make_run_keeps_a_rotating_sandbox_connection_alive_across_refreshes(fresh_clone: Path):
    """The embedded default (SQLite, filesystem Celery broker, the sandbox mounted in the same
    app and database file) through at least three real refreshes of a rotating refresh token.
    Access tokens live 20 s and checks come every 5 s (compressed from 60), so a check lands in
    each token's last third (the refresh margin) and refreshes it; the sandbox must see no
    reused refresh token."""
    import sqlite3
    from types import SimpleNamespace

    from tests.harness import Browser

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in NOT_ON_A_FRESH_MACHINE}
    env.update({"HEARTBEAT_INTERVAL_SECONDS": "2", "SANDBOX_HEARTBEAT_INTERVAL_SECONDS": "5"})
    log_path = fresh_clone / "make-run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["make", "run", f"PORT={port}"],
            cwd=fresh_clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    output = lambda: log_path.read_text(errors="replace")  # noqa: E731
    base = f"http://127.0.0.1:{port}"
    database = fresh_clone / "var" / "brokerlink.sqlite3"

    def rows():
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
            return db.execute(
                "SELECT c.status, e.last_error_message FROM connections_connection c"
                " JOIN engine_enginestate e ON e.connection_id = c.id"
            ).fetchall()

    try:
        login = wait_for(
            lambda: re.search(r"Sign in with\s+(\S+)\s+/\s+(\S+)", output()), timeout=60, what="printed login"
        )
        client_id = wait_for(lambda: re.search(r"Sandbox BrokerApp client\s+(\S+)", output()), timeout=10).group(1)
        wait_for_http(f"{base}/accounts/login/", timeout=30, process=proc)
        control_token = re.search(r"SANDBOX_CONTROL_TOKEN=(\S+)", (fresh_clone / ".env").read_text()).group(1)
        changed = requests.patch(
            f"{base}/sandbox/control/api/clients/{client_id}",
            json={"access_ttl": 20, "rotates_refresh_token": True},
            headers={"X-Sandbox-Control-Token": control_token},
            timeout=10,
        )
        assert changed.status_code == 200, changed.text

        def counters():
            return requests.get(
                f"{base}/sandbox/control/api/clients/{client_id}/counters",
                headers={"X-Sandbox-Control-Token": control_token},
                timeout=10,
            ).json()

        server = SimpleNamespace(url=base, sandbox=SimpleNamespace(url=f"{base}/sandbox"))
        browser = Browser(server)
        browser.login(login.group(1), login.group(2))
        landed = browser.connect("sandbox")
        assert landed.status_code == 200 and "Sandbox Broker" in landed.text
        seen = []
        wait_for(
            lambda: seen.append((counters()["refreshes"], rows())) or counters()["refreshes"] >= 3,
            timeout=180,
            interval=1,
            what="three refreshes",
        )
        # Connected throughout, and the last check (after the third refresh) passed.
        wait_for(lambda: counters()["refreshes"] >= 4 or rows()[0][0] == "connected", timeout=30)
        status, message = rows()[0]
        assert status == "connected", message
        for _, observed in seen:
            assert observed[0][0] in ("connected", "checking", "pending"), observed
        assert counters()["rotated_reuses"] == 0
    except BaseException:
        print(output()[-6000:])
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
