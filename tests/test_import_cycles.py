"""No import cycle between the project's modules, nor between its apps (top-level packages).

Walks every import statement of every project module, including imports inside functions (a
deferred import is still a dependency, only a hidden one), builds the graph and fails naming
each cycle as a chain of files. Self-contained: the same logic as /work/shared/tools/import_cycles.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Not project code, or generated: the venv, Django's migrations, vendored static files.
SKIP_DIRS = {".venv", "venv", "var", "node_modules", "static", "templates", "docs", "migrations", ".git"}
# The test suite may import the app (never the other way round), so it is left out of the graph.
SKIP_TOP = {"tests"}


def _parse(path):
    """ast.parse, tried twice: CPython 3.11 sometimes raises "AST constructor recursion depth
    mismatch" (a SystemError) in a process that has run many threads, for a file that parses."""
    source = path.read_text(encoding="utf-8")
    try:
        return ast.parse(source, str(path))
    except SystemError:
        return ast.parse(source, str(path))


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts
        if set(parts) & SKIP_DIRS or parts[0] in SKIP_TOP:
            continue
        name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str | None:
        while name:
            if name in modules:
                return name
            name = name.rpartition(".")[0]
        return None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(_parse(path)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                found = resolve(target)
                if found and found != name:
                    deps.add(found)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


# config/ is the composition root: its settings, urls and ASGI entry point wire the apps together,
# so it may import any of them; no app imports it (shared helpers live in common/). Its edges out
# are left out of this graph; tests/test_app_map.py counts them and still finds no loop.
COMPOSITION_ROOT = "config"


def app_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    apps: dict[str, set[str]] = {}
    for name, deps in graph.items():
        app = name.split(".")[0]
        targets = apps.setdefault(app, set())
        if app != COMPOSITION_ROOT:
            targets.update(d.split(".")[0] for d in deps if d.split(".")[0] != app)
    return apps


def test_the_walk_finds_a_cycle_when_there_is_one(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "a.py").write_text("def f():\n    from app.b import g\n")
    (tmp_path / "app" / "b.py").write_text("from . import a\n")
    (tmp_path / "other.py").write_text("import app.a\n")
    graph = import_graph(project_modules(tmp_path))
    assert cycles(graph) == [["app.a", "app.b"]]


def test_no_import_cycle_between_modules():
    modules = project_modules()
    assert len(modules) > 100, "the walk should see the whole project"
    found = cycles(import_graph(modules))
    assert not found, "import cycles:\n" + "\n".join(
        " <-> ".join(str(modules[m].relative_to(ROOT)) for m in component) for component in found
    )


def test_no_import_cycle_between_apps():
    graph = app_graph(import_graph(project_modules()))
    assert {"accounts", "brokers", "connections", "ops", "sandbox", "vault"} <= set(graph)
    found = cycles(graph)
    assert not found, "apps importing each other: " + "; ".join(" <-> ".join(c) for c in found)


def test_other_apps_reach_the_sandbox_only_through_its_surface():
    """brokerlink's side talks to the Sandbox Broker over HTTP (its profile, its control API); in
    process only through sandbox/api.py. (bench/ seeds the sandbox's tables directly, on purpose;
    config/ mounts it: urls, and the ASGI wrapper of sandbox/abandoned.py.)"""
    graph = import_graph(project_modules())
    reaching_in = {
        f"{name} -> {dep}"
        for name, deps in graph.items()
        if name.split(".")[0] not in ("sandbox", "bench", COMPOSITION_ROOT)
        for dep in deps
        if dep.split(".")[0] == "sandbox" and dep not in ("sandbox", "sandbox.api")
    }
    assert not reaching_in, f"imports of the sandbox's internals: {sorted(reaching_in)}"
