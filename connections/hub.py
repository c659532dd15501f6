"""What connections announces to, and asks of, the apps built on it, without importing them.

ops/ (webhooks, health) sits on top of connections and subscribes from its AppConfig.ready, so
the import graph runs one way only: ops -> connections, never back.

- `status_changed` (a Django signal) is sent by `connections.state.connection_transition` for
  every status change, inside the caller's transaction: receivers that talk to the outside world
  defer with `transaction.on_commit`. Arguments: connection, from_status, to_status, kind.
- `provide(name, fn)` / `ask(name, default)`: read-only answers the connection pages show but do
  not own ("beat_last_seen" -> datetime | None, "services_health" -> (overall, [service dicts])).
  Without a provider (ops not installed) the pages get the default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger(__name__)

status_changed = Signal()

_providers: dict[str, Callable[[], Any]] = {}


def status_changed_send(connection, *, from_status: str, to_status: str, kind: str) -> None:
    """Announce a transition. Best effort: a failing receiver is logged, never raised, so no
    subscriber can block a status change."""
    sender = type(connection)
    results = status_changed.send_robust(
        sender, connection=connection, from_status=from_status, to_status=to_status, kind=kind
    )
    for receiver, result in results:
        if isinstance(result, Exception):
            logger.error(
                "connections.hub.receiver_failed",
                exc_info=(type(result), result, result.__traceback__),
                extra={"connection_id": str(connection.pk), "receiver": getattr(receiver, "__qualname__", "?")},
            )


def provide(name: str, fn: Callable[[], Any]) -> None:
    _providers[name] = fn


def ask(name: str, default: Any = None) -> Any:
    fn = _providers.get(name)
    return fn() if fn is not None else default
