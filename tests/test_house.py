"""House rules on the code's size: no application module above MAX_LINES lines.

A module that long does more than one job; split it into modules with one job each (as
brokers/custom.py became spec, discovery and custom, and sandbox/services.py a package).
Function size has its own rule: ruff's C901 (max-complexity in pyproject.toml).
Migrations (generated), tests and bench/ (benchmark scripts, not the application) are left out.
"""

from __future__ import annotations

from tests.test_import_cycles import ROOT, project_modules

MAX_LINES = 500
NOT_APPLICATION = {"bench"}
# Modules still over the limit, to be split. This list must only shrink: never add to it,
# and remove an entry as soon as its module is split.
STILL_OVER: set[str] = set()


def _line_count(path) -> int:
    with path.open(encoding="utf-8") as lines:
        return sum(1 for _ in lines)


def application_module_sizes() -> dict[str, int]:
    sizes = {}
    for path in project_modules().values():
        relative = path.relative_to(ROOT)
        if relative.parts[0] in NOT_APPLICATION:
            continue
        sizes[relative.as_posix()] = _line_count(path)
    return sizes


def test_no_application_module_above_the_limit():
    over = {name: lines for name, lines in application_module_sizes().items() if lines > MAX_LINES}
    new = sorted(f"{name} ({lines} lines)" for name, lines in over.items() if name not in STILL_OVER)
    assert not new, f"modules above {MAX_LINES} lines; split each into modules with one job:\n" + "\n".join(new)


def test_the_allow_list_only_names_modules_still_over():
    """An entry whose module was split (or removed) comes off the list, so the list only shrinks."""
    sizes = application_module_sizes()
    done = sorted(name for name in STILL_OVER if sizes.get(name, 0) <= MAX_LINES)
    assert not done, "remove from STILL_OVER (now within the limit): " + ", ".join(done)
