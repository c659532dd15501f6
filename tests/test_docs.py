"""The README and docs/ stay true to the repository: every page is reachable from the README, every
relative link and anchor resolves, and every `make <target>` / `manage.py <command>` they tell a
reader to run exists (no dead instructions); the engine defaults and the environment variables
they quote are the code's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.management import get_commands

from tests.support import PROJECT_PACKAGES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
ALL_PAGES = [README, *DOC_PAGES]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
MAKE = re.compile(r"(?:^|[\s;&|(])make[ \t]+([a-z][\w.-]*)")
MANAGE = re.compile(r"manage\.py[ \t]+([a-z][a-z0-9_]*)")


def prose_and_code(text: str) -> tuple[str, str]:
    """(the text outside code, the code: fenced blocks and inline spans)."""
    prose, code, in_fence = [], [], False
    for line in text.split("\n"):
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        if in_fence:
            code.append(line)
        else:
            code.extend(INLINE_CODE.findall(line))
            prose.append(INLINE_CODE.sub("", line))
    return "\n".join(prose), "\n".join(code)


def github_anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen, in_fence = set(), {}, False
    for line in page.read_text(encoding="utf-8").split("\n"):
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match and not in_fence:
            slug = github_anchor(match.group(1))
            count = seen.get(slug, 0)
            found.add(slug if count == 0 else f"{slug}-{count}")
            seen[slug] = count + 1
    return found


def relative_links(page: Path) -> list[str]:
    prose, _ = prose_and_code(page.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(prose) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.MULTILINE)}


def test_readme_is_short_and_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.split("\n")) <= 200
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings[:2] == ["The two commands", "What you can try in the demo"]


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.split("#")[0]).resolve() for t in relative_links(README) if t.split("#")[0]}
    assert DOC_PAGES, "docs/ has no pages"
    missing = [p.name for p in DOC_PAGES if p.resolve() not in linked]
    assert not missing, f"docs pages not linked from README.md: {missing}"


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    problems = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            problems.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            problems.append(f"{target}: no heading #{fragment} in {file.relative_to(ROOT)}")
    assert not problems, f"{page.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", ALL_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_and_management_command_exists(page):
    _, code = prose_and_code(page.read_text(encoding="utf-8"))
    targets, commands = make_targets(), set(get_commands())
    dead = [f"make {t}" for t in MAKE.findall(code) if t not in targets]
    dead += [f"manage.py {c}" for c in MANAGE.findall(code) if c not in commands]
    assert not dead, f"{page.relative_to(ROOT)} tells readers to run what does not exist: {sorted(set(dead))}"


def test_the_checks_catch_dead_links_and_commands(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\nSee [gone](missing.md) and [here](#title).\n\n```sh\nmake nosuchtarget\n```\n")
    assert relative_links(page) == ["missing.md", "#title"]
    assert "title" in anchors(page)
    assert MAKE.findall(prose_and_code(page.read_text())[1]) == ["nosuchtarget"]
    assert "nosuchtarget" not in make_targets() and "run" in make_targets()
    assert github_anchor("The sweep (`engine.tasks.heartbeat_tick` → lanes → `engine.sweep.sweep_run`)") == (
        "the-sweep-enginetasksheartbeat_tick--lanes--enginesweepsweep_run"
    )


# --- engine defaults quoted in the docs --------------------------------------------------------


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _knobs_paragraph() -> str:
    text = (ROOT / "docs" / "engine.md").read_text(encoding="utf-8")
    start = text.index("Knobs (`engine/conf.py`)")
    return text[start : text.index("\n\n", start)]


def test_the_engine_doc_lists_every_knob_with_its_default():
    from engine.conf import DEFAULTS

    quoted = dict(re.findall(r"\b([A-Z][A-Z_]+[A-Z])\s+([\d.]+)\b", _knobs_paragraph()))
    assert {name: _number(value) for name, value in quoted.items()} == {k: float(v) for k, v in DEFAULTS.items()}


def test_the_configuration_page_names_every_engine_knob():
    from engine.conf import DEFAULTS

    row = next(
        line
        for line in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").split("\n")
        if line.startswith("| `BROKERLINK_ENGINE_<NAME>`")
    )
    assert set(re.findall(r"`([A-Z][A-Z_]+)`", row.split("|")[3])) == set(DEFAULTS)


# A knob's default quoted in prose: "`BATCH_SIZE` (default 500)", "`LEASE_SECONDS`, default 120 s",
# "`SLOW_PROBE_SECONDS` (300)".
QUOTED_DEFAULT = re.compile(r"`([A-Z][A-Z_]+)`(?: \((?:default )?|, default )([\d,.]+)")
# Defaults quoted without the knob's name, in words a reader meets first.
PLAIN_CLAIMS = [
    ("README.md", r"sends up to (\d+) \*\*lanes\*\*", "SWEEP_LANES"),
    ("README.md", r"never sees more than ([\d,]+) concurrent heartbeats", "BROKER_CONCURRENCY"),
    ("docs/engine.md", r"with the (\d+) s look-ahead", "SWEEP_LOOKAHEAD_SECONDS"),
]


def test_engine_defaults_quoted_in_the_docs_are_the_codes():
    from engine.conf import DEFAULTS

    wrong, seen = [], set()
    for page in ALL_PAGES:
        prose = page.read_text(encoding="utf-8")
        for name, value in QUOTED_DEFAULT.findall(prose):
            if name in DEFAULTS:
                seen.add(name)
                if _number(value.rstrip(".,")) != float(DEFAULTS[name]):
                    wrong.append(f"{page.relative_to(ROOT)}: {name} {value} (code: {DEFAULTS[name]})")
    for path, pattern, name in PLAIN_CLAIMS:
        found = re.findall(pattern, (ROOT / path).read_text(encoding="utf-8"))
        assert found, f"{path} no longer says {pattern!r}: update PLAIN_CLAIMS"
        wrong += [
            f"{path}: {name} {value} (code: {DEFAULTS[name]})" for value in found if _number(value) != DEFAULTS[name]
        ]
    assert {"BATCH_SIZE", "BROKER_CONCURRENCY", "LEASE_SECONDS"} <= seen
    assert not wrong, "engine defaults the docs get wrong:\n" + "\n".join(wrong)


def test_the_interval_jitter_the_engine_doc_quotes_is_the_codes():
    from engine.decide import INTERVAL_JITTER

    text = (ROOT / "docs" / "engine.md").read_text(encoding="utf-8")
    assert f"jittered by 0–{INTERVAL_JITTER * 100:g} %" in text


def test_the_heartbeat_benchmark_runs_on_the_engines_batch_size():
    from engine.conf import DEFAULTS

    bench = (ROOT / "bench" / "heartbeat.py").read_text(encoding="utf-8")
    default = re.search(r'"--batch-size", type=int, default=(\d+)', bench).group(1)
    assert int(default) == DEFAULTS["BATCH_SIZE"]


def test_the_quoted_default_check_catches_a_wrong_number():
    assert QUOTED_DEFAULT.findall("batches of `BATCH_SIZE` (default 1,000) and `LEASE_SECONDS`, default 9 s") == [
        ("BATCH_SIZE", "1,000"),
        ("LEASE_SECONDS", "9"),
    ]


# --- environment variables in docs/configuration.md ------------------------------------------

# The project's code: every app's Python (not the venv, not the tests), the Procfiles, the Makefile.
CODE_FILES = [
    *(
        f
        for d in sorted(ROOT.iterdir())
        if d.is_dir() and d.name[0] not in "._" and d.name != "tests"
        for f in d.rglob("*.py")
    ),
    ROOT / "Procfile",
    ROOT / "Procfile.dev",
    ROOT / "Makefile",
]
# Read in code: env_int("NAME", 20), env_str("NAME", "5"), os.environ.get("NAME", "1").
READ_WITH_DEFAULT = re.compile(r"""(?:env_int|env_str|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]+)",\s*"?([\d.]+)"?\s*\)""")


def _configuration_rows() -> list[tuple[list[str], list[str]]]:
    """(variable names, quoted defaults) of each row of the configuration table."""
    rows = []
    for line in (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8").split("\n"):
        cells = line.split("|")
        if not line.startswith("| `") or len(cells) < 4:
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]+(?:<NAME>)?)`", cells[1])
        rows.append((names, re.findall(r"`([^`]*)`", cells[2])))
    return rows


def _code_text() -> str:
    return "\n".join(f.read_text(encoding="utf-8") for f in CODE_FILES if f.is_file())


def test_every_variable_the_configuration_page_names_is_read_by_the_code():
    code = _code_text()
    names = [n for row, _ in _configuration_rows() for n in row]
    assert len(names) > 50
    missing = []
    for name in names:
        if name.endswith("_<NAME>"):  # a family: BROKERLINK_ENGINE_<NAME> is tunable("ENGINE", …)
            prefix = name.removeprefix("BROKERLINK_").removesuffix("_<NAME>")
            found = f'tunable("{prefix}"' in code
        elif name.startswith("BROKERLINK_") and name not in code:  # tunable("API", "AUDIT_RETENTION_DAYS", …)
            prefix, knob = name.removeprefix("BROKERLINK_").split("_", 1)
            found = f'tunable("{prefix}"' in code and f'"{knob}"' in code
        else:
            found = re.search(rf"\b{name}\b", code) is not None
        if not found:
            missing.append(name)
    assert not missing, f"docs/configuration.md names variables no code reads: {missing}"


def test_every_variable_the_settings_read_is_on_the_configuration_page():
    settings = (ROOT / "config" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r"""env_(?:str|int|bool|list|required)\(\s*"([A-Z][A-Z0-9_]+)\"""", settings))
    documented = {n for row, _ in _configuration_rows() for n in row}
    assert read and not read - documented, f"read in config/settings.py, missing from the page: {read - documented}"


def test_the_numeric_defaults_the_configuration_page_quotes_are_the_codes():
    code_defaults = dict(READ_WITH_DEFAULT.findall(_code_text()))
    wrong, checked = [], 0
    for names, defaults in _configuration_rows():
        if len(names) != len(defaults):  # a default in words ("on in development") or a family
            continue
        for name, default in zip(names, defaults, strict=True):
            if re.fullmatch(r"[\d.]+", default) and name in code_defaults:
                checked += 1
                if float(default) != float(code_defaults[name]):
                    wrong.append(f"{name}: page {default}, code {code_defaults[name]}")
    assert checked > 20 and not wrong, f"checked {checked}; wrong: {wrong}"


def _table_defaults(page: str, defaults: dict) -> dict[str, str]:
    """{name: quoted default} from the rows of `page`'s tables whose names are all in `defaults`."""
    quoted = {}
    for line in (ROOT / page).read_text(encoding="utf-8").split("\n"):
        cells = line.split("|")
        if not line.startswith("| `") or len(cells) < 4:
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[1])
        values = re.findall(r"`([\d.]+)`", cells[2])
        if names and all(n in defaults for n in names) and len(names) == len(values):
            quoted.update(zip(names, values, strict=True))
    return quoted


@pytest.mark.parametrize(
    ("page", "module"), [("docs/operations.md", "ops.alerts"), ("docs/webhooks.md", "ops.webhooks")]
)
def test_the_alert_and_webhook_tables_list_every_knob_with_its_default(page, module):
    import importlib

    defaults = importlib.import_module(module).DEFAULTS
    quoted = _table_defaults(page, defaults)
    assert {n: float(v) for n, v in quoted.items()} == {n: float(v) for n, v in defaults.items()}


# --- tests the docs cite as proof -------------------------------------------------------------

# `tests/engine/test_x.py::test_y`, then in the same line `…::test_z` or `::test_z` (same file).
TEST_REF = re.compile(r"`(?:((?:tests/[\w/]+/)?test_\w+\.py)|…|)::(test_\w+)")


def _test_file(name: str) -> Path | None:
    if "/" in name:
        return ROOT / name if (ROOT / name).exists() else None
    found = sorted((ROOT / "tests").rglob(name))
    return found[0] if len(found) == 1 else None


def test_every_test_the_docs_cite_exists():
    missing, cited = [], 0
    for page in ALL_PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").split("\n"), 1):
            current = None
            for file, name in TEST_REF.findall(line):
                if file:
                    current = _test_file(file)
                    if current is None:
                        missing.append(f"{page.relative_to(ROOT)}:{number}: {file} (no such file, or ambiguous)")
                        continue
                if current is None:
                    continue
                cited += 1
                if not re.search(rf"^\s*(?:async )?def {name}\(", current.read_text(encoding="utf-8"), re.MULTILINE):
                    missing.append(f"{page.relative_to(ROOT)}:{number}: {current.relative_to(ROOT)}::{name}")
    assert cited > 20 and not missing, "the docs cite tests that do not exist:\n" + "\n".join(missing)


# --- files the docs name -----------------------------------------------------------------------

FILE_NAMED = re.compile(r"^[\w.-]+(?:/[\w.-]+)*/(?:[\w.-]+\.(?:py|md|html|txt|js|css|yaml|in|sql))?$")


def test_every_repository_file_and_folder_the_docs_name_exists():
    """`engine/monitoring.py`, `tests/multihost/`, `pages/partials/_card.html` (a template): a
    word in code quotes, with a slash, naming a file of the repository or a folder of it."""
    # var/ is runtime state (gitignored), made by `make run` and the benchmarks: not a repository folder.
    top = {p.name for p in ROOT.iterdir() if p.is_dir()} - {"var"}
    missing, named = [], 0
    for page in ALL_PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").split("\n"), 1):
            for span in INLINE_CODE.findall(line):
                for word in span.split():
                    word = word.strip("(),;:")
                    if not FILE_NAMED.match(word) or word.split("/")[0] not in top | {"templates", "static"}:
                        continue
                    if not word.endswith("/") and "." not in word.rsplit("/", 1)[1]:
                        continue
                    named += 1
                    if not any((base / word).exists() for base in (ROOT, ROOT / "templates", ROOT / "static")):
                        missing.append(f"{page.relative_to(ROOT)}:{number}: {word}")
    assert named > 50 and not missing, "the docs name files that do not exist:\n" + "\n".join(missing)


# --- Python names the docs quote ---------------------------------------------------------------

APPS = PROJECT_PACKAGES
DOTTED = re.compile(rf"\b((?:{'|'.join(APPS)})(?:\.[A-Za-z_]\w*)+)")


def _resolves(dotted: str) -> bool:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_every_module_and_function_the_docs_quote_exists():
    """`engine.sweep.sweep_tick`, `pages.presenters.status.status_for`: a dotted name in code
    quotes, starting with an app, is a module or an attribute of one; or else a name the code
    itself writes as a string (a log event `connections.refresh.answer_dropped`, a permission
    `connections.disconnect_others`, a check id `brokers.W001`, a Celery task name)."""
    code = _code_text()
    literals = set(re.findall(r"""["']([a-z_]+\.[\w.]+)""", code))
    wrong, quoted = [], 0
    for page in ALL_PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").split("\n"), 1):
            for span in INLINE_CODE.findall(line):
                for dotted in DOTTED.findall(span):
                    dotted = dotted.removesuffix(".py")
                    if dotted.endswith((".md", ".yaml", ".html", ".css", ".js")):
                        continue
                    quoted += 1
                    if _resolves(dotted) or any(s == dotted or s.startswith(dotted + ".") for s in literals):
                        continue
                    codename = dotted.split(".")[-1]
                    if dotted.count(".") == 1 and (  # a permission `app_label.codename`, Django's or declared
                        re.fullmatch(r"(add|change|delete|view)_[a-z]+", codename) or f'"{codename}"' in code
                    ):
                        continue
                    wrong.append(f"{page.relative_to(ROOT)}:{number}: {dotted}")
    assert quoted > 100 and not wrong, "the docs quote names the code does not have:\n" + "\n".join(wrong)


def test_every_docs_link_in_the_code_resolves():
    """Comments link the docs for figures and reasons (`docs/benchmarks.md#figures-the-code-cites`):
    the page and its heading must still be there."""
    links, broken = 0, []
    for target in sorted(set(re.findall(r"docs/[a-z_]+\.md(?:#[a-z0-9_-]+)?", _code_text()))):
        links += 1
        path, _, fragment = target.partition("#")
        if not (ROOT / path).exists() or (fragment and fragment not in anchors(ROOT / path)):
            broken.append(target)
    assert links > 10 and not broken, f"code comments link docs that are not there: {broken}"


# --- process commands -------------------------------------------------------------------------


def _procfile(name: str) -> dict[str, str]:
    lines = (ROOT / name).read_text(encoding="utf-8").split("\n")
    return dict(line.split(": ", 1) for line in lines if re.match(r"^[a-z]+: ", line))


def _process_rows(page: str) -> dict[str, str]:
    """{process: its command} from the rows `| web | `command` | …` of a page's process table."""
    rows = re.findall(
        r"^\| `?(web|worker|beat|release)`? \| `([^`]+)`", (ROOT / page).read_text(encoding="utf-8"), re.M
    )
    return dict(rows)


def test_the_deploy_table_quotes_the_procfile():
    quoted, procfile = _process_rows("docs/operations.md"), _procfile("Procfile")
    assert set(quoted) == set(procfile) == {"web", "worker", "beat", "release"}
    wrong = {name: (command, procfile[name]) for name, command in quoted.items() if command != procfile[name]}
    assert not wrong, f"docs/operations.md's deploy table against the Procfile: {wrong}"


def test_the_readme_process_table_quotes_procfile_dev():
    quoted, procfile = _process_rows("README.md"), _procfile("Procfile.dev")
    assert set(quoted) == set(procfile) == {"web", "worker", "beat"}
    wrong = {name: command for name, command in quoted.items() if command not in procfile[name]}
    assert not wrong, f"README's process table against Procfile.dev: {wrong}"
