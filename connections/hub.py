"""What connections asks of the apps built on it, without importing them.

ops/ (health, alerts) sits on top of connections and provides its answers from its
AppConfig.ready, so the import graph runs one way only: ops -> connections, never back.
(Status changes are not announced here: each writes a ConnectionEvent row, which ops' webhooks
hear through post_save.)

- `provide(name, fn)` / `ask(name, default)`: read-only answers the connection pages show but do
  not own ("beat_last_seen" -> datetime | None, "services_health" -> (overall, [service dicts]),
  "open_alerts" -> [alerts]). Without a provider (ops not installed) the pages get the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_providers: dict[str, Callable[[], Any]] = {}


def provide(name: str, fn: Callable[[], Any]) -> None:
    _providers[name] = fn


def ask(name: str, default: Any = None) -> Any:
    fn = _providers.get(name)
    return fn() if fn is not None else default
