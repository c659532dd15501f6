"""The README's app map is the code's: one row per package, and each row's "imports" column is
exactly the packages its modules import (function-level imports included, as in
tests/test_import_cycles.py). config/ wires every app by name; its own imports are checked too."""

from __future__ import annotations

import re

from tests.test_import_cycles import ROOT, cycles, import_graph, project_modules

ROW = re.compile(r"^\| `([a-z_]+)/` \| (.+?) \| (.+?) \|$", re.MULTILINE)


def app_map() -> dict[str, set[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### App map") :]
    rows = {}
    for app, _owns, imports in ROW.findall(section):
        rows[app] = set() if imports.strip() == "nothing" else set(re.findall(r"`([a-z_]+)`", imports.split(";")[0]))
    return rows


def imports_by_package() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, deps in import_graph(project_modules()).items():
        package = name.split(".")[0]
        if (ROOT / package / "__init__.py").exists():
            found.setdefault(package, set()).update(d.split(".")[0] for d in deps if d.split(".")[0] != package)
    return found


def test_the_map_has_one_row_per_package():
    assert set(app_map()) == set(imports_by_package())


def test_each_row_says_what_its_package_imports():
    documented, actual = app_map(), imports_by_package()
    wrong = [
        f"{app}/: README says {sorted(documented.get(app, ()))}, the code imports {sorted(actual[app])}"
        for app in sorted(actual)
        if documented.get(app) != actual[app]
    ]
    assert not wrong, "update the README's app map (or the imports):\n" + "\n".join(wrong)


def test_no_import_loop_between_apps_with_config_counted():
    """config/ is only wiring (no app imports it), so counting its imports leaves the app graph loop-free."""
    assert not cycles(imports_by_package())
