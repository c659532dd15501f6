"""The automatic test tiers (tests/tiers.py): what starts a process is found, and a fast test
that starts one anyway is stopped with a message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests import tiers


def test_the_shared_fixtures_that_start_processes_are_found():
    names = tiers._shared_process_names()
    # Listed, and found by reading tests/fixtures and the conftest files.
    assert {"sandbox_server", "celery_cluster", "private_postgres", "private_redis", "brokerlink"} <= names
    assert {"running", "emulating", "chromium"} <= names
    # In-process servers (threads) are the fast tier's own.
    assert not {"fake_broker", "receiver", "metadata_server", "captured_logs", "log_text", "wait_for_http"} & names


def test_a_helper_that_starts_a_process_marks_what_calls_it_but_not_a_fixtures_parameters(tmp_path):
    module = tmp_path / "test_example.py"
    module.write_text(
        "import subprocess\n"
        "def manage(*args):\n"
        "    return subprocess.run(['python', 'manage.py', *args])\n"
        "def migrate_twice():\n"
        "    manage('migrate'); manage('migrate')\n"
        "def in_memory(settings):\n"
        "    return settings\n"
        "def uses_a_cluster(celery_cluster):\n"
        "    return 1\n"
    )
    names = tiers._process_names(module, frozenset({"celery_cluster"}))
    assert {"manage", "migrate_twice"} <= names
    # A parameter is the fixture closure's business (pytest resolves it per test), not a call.
    assert "in_memory" not in names and "uses_a_cluster" not in names


def test_a_fast_test_that_starts_a_process_is_stopped_and_told_how_to_move(request):
    assert request.node.get_closest_marker("slow") is None  # this test is in the fast tier
    # Started in a way the collection-time scan cannot see (a name looked up at run time).
    start = getattr(subprocess, "r" + "un")
    with pytest.raises(tiers.StartsAProcessInTheFastTier, match="pytest.mark.slow"):
        start([sys.executable, "-c", "pass"], check=False)
