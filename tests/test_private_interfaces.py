"""Public interfaces of dependencies only (issue 25): no application module imports a private
name from a third-party package, and no class overrides a private method of a third-party base,
except the few listed here, each with the reason no public way exists. A dependency upgrade
that moves one of those makes `test_each_allowed_private_hook_still_exists` fail by name."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

from tests.support import PROJECT_PACKAGES

ROOT = Path(__file__).resolve().parent.parent
APPS = list(PROJECT_PACKAGES)
SKIP = {"config.wsgi", "config.asgi"}  # entry points: building the application is not an import

# (our class, the private method it overrides, the third-party class that defines it): why.
ALLOWED_OVERRIDES = {
    # allauth keys its failed-login limit on the email alone (a stranger could lock a person out);
    # the cache key is only reachable through this method (security finding 8).
    (
        "accounts.adapter.AccountAdapter",
        "_get_login_attempts_cache_key",
        "allauth.account.adapter.DefaultAccountAdapter",
    ),
}


def _modules():
    for app in APPS:
        package = importlib.import_module(app)
        yield package.__name__
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{app}."):
            if ".migrations" in info.name or info.name in SKIP:
                continue
            yield info.name


def _ours(module_name: str) -> bool:
    return module_name.split(".")[0] in APPS


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_names_are_imported_from_dependencies():
    found = []
    for name in _modules():
        path = Path(importlib.util.find_spec(name).origin)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and not _ours(node.module):
                parts = node.module.split(".") + [alias.name for alias in node.names]
                if any(_private(part) for part in parts):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} from {node.module} import ...")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if not _ours(alias.name) and any(_private(part) for part in alias.name.split(".")):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} import {alias.name}")
    assert not found, "private names of dependencies imported:\n" + "\n".join(found)


def _private_overrides():
    for name in _modules():
        module = importlib.import_module(name)
        for cls_name, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != name:
                continue
            for attr, value in vars(cls).items():
                function = getattr(value, "__func__", getattr(value, "fget", value))
                written_here = inspect.isfunction(function) and function.__qualname__.startswith(f"{cls.__qualname__}.")
                if not written_here or not _private(attr) or attr.startswith(f"_{cls_name}__"):
                    continue
                for base in cls.__mro__[1:]:
                    if not _ours(base.__module__) and attr in vars(base):
                        yield (f"{name}.{cls_name}", attr, f"{base.__module__}.{base.__qualname__}")
                        break


def test_no_private_method_of_a_dependency_is_overridden_unless_listed():
    assert set(_private_overrides()) == ALLOWED_OVERRIDES


@pytest.mark.parametrize(("ours", "method", "theirs"), sorted(ALLOWED_OVERRIDES))
def test_each_allowed_private_hook_still_exists(ours, method, theirs):
    module_name, _, class_name = theirs.rpartition(".")
    base = getattr(importlib.import_module(module_name), class_name)
    assert method in vars(base), f"{theirs}.{method} is gone: {ours} overrides nothing any more"
    callers = [name for name, value in vars(base).items() if callable(value) and name != method]
    uses = [name for name in callers if method in inspect.getsource(vars(base)[name])]
    assert uses, f"{theirs} no longer calls {method}: {ours}'s override has no effect"
