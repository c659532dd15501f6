"""Numeric knobs of one subsystem (engine, alerts, webhooks, the API), read the same way."""

from __future__ import annotations

import os

from django.conf import settings


def tunable(prefix: str, name: str, defaults: dict[str, float]) -> float:
    """A numeric knob of one subsystem (engine, alerts, webhooks).

    The Django setting `<PREFIX>_<NAME>` wins, then the environment variable
    `BROKERLINK_<PREFIX>_<NAME>`, then the subsystem's documented default. The default's
    type is kept, so integer knobs stay integers.
    """
    value = getattr(settings, f"{prefix}_{name}", None)
    if value is None:
        value = os.environ.get(f"BROKERLINK_{prefix}_{name}")
    default = defaults[name]
    if value is None:
        return default
    return int(float(value)) if isinstance(default, int) else float(value)
