"""Security finding 14: runtime and development requirements apart, every package pinned with hashes, an audit."""

from __future__ import annotations

import re
import subprocess

from tests.support import PYTHON, ROOT

DEV_TOOLS = {"pytest", "pytest-django", "pytest-timeout", "playwright", "ruff", "pip-tools", "pip-audit"}


def requirements(name: str) -> dict[str, str]:
    """name -> the whole requirement block (version and hashes), from a pip-compile lock file."""
    text = (ROOT / name).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    found = {}
    for block in blocks:
        match = re.match(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==\S+", block)
        if match:
            found[match.group(1).lower()] = block
    return found


def test_every_package_is_pinned_with_hashes_and_dev_tools_stay_out_of_runtime():
    runtime = requirements("requirements.txt")
    dev = requirements("requirements-dev.txt")
    assert "django" in runtime and "urllib3" in runtime  # transitive dependencies are pinned too
    for block in [*runtime.values(), *dev.values()]:
        assert "--hash=sha256:" in block, block.splitlines()[0]
    assert not DEV_TOOLS & set(runtime)
    assert set(dev) >= DEV_TOOLS
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        assert not line.strip() or line.startswith((" ", "#", "-")) or "==" in line, line


def test_the_lock_files_install_with_require_hashes():
    result = subprocess.run(
        [PYTHON, "-m", "pip", "install", "--dry-run", "--quiet", "--require-hashes",
         "-r", "requirements.txt", "-r", "requirements-dev.txt"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_make_installs_by_hash_and_ci_runs_the_audit_only_when_asked():
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements.txt -r requirements-dev.txt" in makefile
    assert "\naudit:" in makefile and "pip-audit" in makefile
    assert "--generate-hashes" in makefile  # make requirements recompiles the .in files
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'if [ "${BROKERLINK_AUDIT:-0}" = 1 ]; then\n  make audit' in ci
    # It never decides by probing a host.
    assert "pypi.org" not in ci and "create_connection" not in ci and "curl" not in ci
