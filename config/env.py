"""Reading configuration from the environment.

One place that knows how a variable is parsed and which ones production refuses to start
without, so settings.py stays a flat list of values.
"""

from __future__ import annotations

import os

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}


class MissingSetting(ImproperlyConfigured):
    """A variable that production cannot run without is not set."""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in TRUE_WORDS


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from exc


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_required(name: str, *, production: bool, dev_default: str = "") -> str:
    """A value production must be given; development falls back to `dev_default`."""
    value = os.environ.get(name, "")
    if value:
        return value
    if production:
        raise MissingSetting(
            f"{name} is not set. DJANGO_ENV=production refuses to start without it; "
            f"see the configuration table in docs/configuration.md."
        )
    return dev_default
