"""The sandbox's server log stays quiet: a whole OAuth dance (consent, code exchange, refresh,
revocation) logs no deprecation warning from authlib (which it used to, on every token request)."""

import glob
import os

from django.conf import settings

from tests.sandbox.conftest import Flow


def sandbox_log() -> str:
    """The log of the sandbox process this test started (the newest of this test process's)."""
    paths = glob.glob(os.path.join(str(settings.VAR_DIR), "test-logs", f"sandbox-{os.getpid()}-*.log"))
    with open(max(paths, key=os.path.getmtime), errors="replace") as log:
        return log.read()


def test_a_whole_dance_logs_no_deprecation_warning(own_sandbox_server):
    sandbox_server = own_sandbox_server  # a fresh process: its log holds this dance only
    flow = Flow(sandbox_server, sandbox_server.create_client(rotate_refresh=True))
    result, verifier = flow.consent(state="s-1")
    tokens = flow.exchange(result.code, verifier).json()
    refreshed = flow.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert flow.revoke(refreshed.json()["refresh_token"], "refresh_token").status_code == 200

    log = sandbox_log()
    assert sandbox_server.url in log  # the log is this server's
    assert "Deprecat" not in log and "deprecated" not in log, log[-3000:]
