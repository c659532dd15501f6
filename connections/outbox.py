"""The outbox: every announcement of a connection's history goes out from here, once, after commit.

A status change (and every other history entry) is one `ConnectionEvent` row, written in the
transaction that made the change (`state.connection_event_record`). When that transaction
commits, one dispatcher hands the committed rows to every consumer:

- live pages: one message on the live channel per connection whose status changed
  (`display.changes_publish`; without Redis the pages' hubs poll the database instead);
- `event_committed`, a Django signal other apps connect to from their `AppConfig.ready`
  (ops' outgoing webhooks), so the import direction stays theirs -> connections;
- `notification_committed`, the same for a recorded notification (the engine's expiry
  warning, which partner apps hear as the `connection.expiring` webhook).

Nothing is dispatched for a transaction that rolls back (`transaction.on_commit` drops it).
Dispatch is best effort per consumer: a failing consumer is logged and the others still run;
the change itself is committed before any of them is called, so none can undo it.

Writers of many events in one transaction (the engine's batch) wrap it in `events_batched()`:
its events go out together after the commit, in one live message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from django.db import transaction
from django.dispatch import Signal

from connections import display

logger = logging.getLogger(__name__)

# Sent after commit with `events`: the committed ConnectionEvent rows (their `.connection` loaded).
event_committed = Signal()
# Sent after commit with `notification`: a committed engine Notification row.
notification_committed = Signal()

_local = threading.local()


def _batches() -> list[list]:
    if not hasattr(_local, "batches"):
        _local.batches = []
    return _local.batches


@contextmanager
def events_batched() -> Iterator[list]:
    """Collect the events written inside, and dispatch them together after the enclosing
    transaction commits. Use it inside that transaction: when the block raises, its events
    are dropped (the transaction rolls back with them)."""
    batch: list = []
    stack = _batches()
    stack.append(batch)
    try:
        yield batch
    finally:
        stack.pop()
    events_dispatch_on_commit(batch)


def event_written(event) -> None:
    """A ConnectionEvent row was just written: dispatch it after commit (with its batch, if any)."""
    stack = _batches()
    if stack:
        stack[-1].append(event)
    else:
        events_dispatch_on_commit([event])


def events_dispatch_on_commit(events: list) -> None:
    if events:
        transaction.on_commit(partial(events_dispatch, list(events)))


def notification_dispatch_on_commit(notification) -> None:
    transaction.on_commit(partial(_send, notification_committed, notification=notification))


def events_dispatch(events: list) -> None:
    """Hand committed events to every consumer. Never raises."""
    try:
        _live_publish(events)
    except Exception:  # noqa: BLE001 - open pages fall back to polling the database
        logger.exception("connections.outbox.consumer_failed", extra={"consumer": "live"})
    _send(event_committed, events=events)


def _live_publish(events: list) -> None:
    """One live message for the connections whose status these events changed, each with the
    version of the row as committed (the last change of a connection wins)."""
    changes: dict[str, list[str]] = {}
    for event in events:
        if not event.to_status:
            continue  # not a transition: nothing a card shows changed because of it
        connection = event.connection
        changes[str(connection.pk)] = [
            str(connection.user_id), str(connection.pk), connection.status, display.display_version(connection)
        ]
    display.changes_publish(list(changes.values()))


def _send(signal: Signal, **kwargs) -> None:
    for receiver, result in signal.send_robust(sender=None, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "connections.outbox.consumer_failed",
                extra={"consumer": getattr(receiver, "__qualname__", repr(receiver))},
                exc_info=(type(result), result, result.__traceback__),
            )
