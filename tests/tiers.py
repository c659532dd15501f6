"""Test tiers, decided at collection so a new test lands in the right one without anyone marking it.

- `slow`: the test starts a process (a server, a Celery worker or beat, a broker, PostgreSQL,
  Redis, a shell command) through any fixture it uses, directly or through other fixtures, or in
  its own body or a module helper it calls.
  A test that asks for a longer timeout than the suite's (`pytest.mark.timeout(600)`) is `slow` too.
- `browser` (always `slow` too): the test drives Chromium.
- everything else is the fast tier (`make test-fast`: `pytest -m "not slow and not browser"`):
  unit and in-process tests (test client, in-process threads, the test database).

How a process start is recognised: the fixtures below, plus every fixture or helper function
(in tests/fixtures, the conftest files, tests/*.py helpers and the test module itself) whose code
calls `running(...)`, `subprocess`, `Popen`, a `BrokerlinkServer`/`SandboxServer`, Playwright,
or another such function. A test in the fast tier that still starts a process (through a path
this scan cannot see) fails at once with a message saying so, in `make test` and CI as well:
a misplaced test is found the first time it runs, not by a slow fast tier.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# Fixtures that start processes (tests/fixtures/*, the folder conftests); the scan below finds
# new ones too, this list only says where to look first.
PROCESS_FIXTURES = frozenset(
    {
        "sandbox_server",  # manage.py sandbox_serve, one per test
        "own_sandbox_server",  # the same, where a folder makes sandbox_server the shared one
        "_shared_sandbox_process",  # the session's sandbox_serve (shared_sandbox)
        "brokerlink",  # uvicorn serving the app (stack, and every fixture built on it)
        "emulating",  # uvicorn with the emulated brokers (contract tests)
        "celery_cluster",  # Celery workers and beats (worker)
        "private_postgres",  # a PostgreSQL of the test's own
        "private_redis",  # a redis-server of the test's own
    }
)
BROWSER_FIXTURES = frozenset({"chromium"})  # page, phone_page

# Code that starts a process (or Chromium) when it runs.
STARTS_A_PROCESS = re.compile(
    r"\brunning\(|\bBrokerlinkServer\b|\bSandboxServer\(|\bsubprocess\.(run|call|check_\w+|getoutput|getstatusoutput)\("
    r"|\bPopen\(|\bos\.(fork|spawn\w*|exec\w*|system)\("
    r"|\bmultiprocessing\b|\bcreate_subprocess_\w+\(|_playwright\("
)


@functools.cache
def _shared_process_names() -> frozenset[str]:
    """Process-starting fixtures and helpers of the shared files: tests/fixtures/*, tests/*.py
    helpers (harness, support) and every conftest.py, plus the fixtures listed above."""
    names = set(PROCESS_FIXTURES)
    shared = [*TESTS.glob("fixtures/*.py"), *TESTS.glob("*.py"), *TESTS.rglob("conftest.py")]
    shared = [path for path in shared if not path.name.startswith("test_") and path != Path(__file__)]
    for _ in range(3):  # a conftest fixture may use a harness helper that uses a support helper
        for path in shared:
            names |= _process_names(path, frozenset(names))
    return frozenset(names)


_scanning: set[Path] = set()  # files being scanned (two test files importing each other)


@functools.cache
def _process_names(path: Path, known: frozenset[str]) -> frozenset[str]:
    """Names of one file's module-level functions (fixtures and helpers) whose code starts a
    process, or uses a fixture or calls a function that does (`known`, or another one here)."""
    try:
        source = path.read_text()
        tree = ast.parse(source)
    except (OSError, SyntaxError):
        return frozenset()
    lines = source.splitlines()
    functions = {}
    imported = set()
    for node in tree.body:
        # A helper imported from another test file (`from tests.ops.test_production import manage`).
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests.") and path not in _scanning:
            other = TESTS.parent.joinpath(*node.module.split(".")).with_suffix(".py")
            _scanning.add(path)
            try:
                theirs = _process_names(other, known) if other.exists() else frozenset()
            finally:
                _scanning.discard(path)
            imported |= {alias.asname or alias.name for alias in node.names if alias.name in theirs}
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            # Names it calls or reads; its parameters (a fixture's fixtures) are its callers' business:
            # the collected test's fixture closure already holds them.
            params = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - params
            functions[node.name] = ("\n".join(lines[node.lineno - 1 : node.end_lineno]), used)
    found = {name for name, (text, _) in functions.items() if STARTS_A_PROCESS.search(text)} | imported
    changed = True
    while changed:  # through helpers calling helpers
        changed = False
        for name, (_, used) in functions.items():
            if name not in found and used & (known | found):
                found.add(name)
                changed = True
    return frozenset(found)


@functools.cache
def _body(function) -> tuple[str, frozenset[str]]:
    """A test function's source and the names it uses (once per function, not per parameter)."""
    if function is None:
        return "", frozenset()
    try:
        body = inspect.getsource(function)
        tree = ast.parse(textwrap.dedent(body))
    except (OSError, TypeError, SyntaxError):
        return "", frozenset()
    return body, frozenset(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))


def classify(item: pytest.Item) -> tuple[bool, bool]:
    """(starts a process, drives a browser) for one collected test."""
    fixtures = set(getattr(item, "fixturenames", ()))
    shared = _shared_process_names()
    module = getattr(item, "module", None)
    path = getattr(module, "__file__", None)
    local = _process_names(Path(path), shared) if path else frozenset()
    body, used = _body(getattr(item, "function", None))
    browser = bool(fixtures & BROWSER_FIXTURES) or "_playwright(" in body
    starts = browser or bool((fixtures | used) & (shared | local)) or bool(STARTS_A_PROCESS.search(body))
    return starts, browser


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    default_timeout = float(config.getini("timeout") or 0)
    for item in items:
        starts, browser = classify(item)
        # A test that asks for more than the suite's per-test timeout says it is long by itself.
        long = item.get_closest_marker("timeout")
        if long and long.args and default_timeout and float(long.args[0]) > default_timeout:
            starts = True
        if browser and not item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.browser)
        if starts and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


# --- the guard: a fast-tier test that starts a process fails, saying why -------------------------

_current: dict[str, str | None] = {"fast_test": None}
_AUDITED = {"subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.system"}


class StartsAProcessInTheFastTier(RuntimeError):
    pass


def _guard(event: str, args: tuple) -> None:
    test = _current["fast_test"]
    if test is not None and event in _AUDITED:
        _current["fast_test"] = None  # report once; the test's cleanup may start nothing more
        what = args[1] if event == "subprocess.Popen" and len(args) > 1 else args
        raise StartsAProcessInTheFastTier(
            f"{test} starts a process ({event}: {what!r}) but was classified as a fast test: add "
            "`pytestmark = pytest.mark.slow` to its module, or start the process in a fixture "
            "(tests/tiers.py recognises those)"
        )


def pytest_configure(config):
    sys.addaudithook(_guard)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    fast = item.get_closest_marker("slow") is None and item.get_closest_marker("browser") is None
    _current["fast_test"] = item.nodeid if fast else None
    try:
        return (yield)
    finally:
        _current["fast_test"] = None
