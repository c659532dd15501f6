"""The live hub's database reads (`pages.live`): each runs in a worker thread and hands its
database connection back before returning, so no open stream holds one while it waits.

The cards, summary strip, sign-in check and monitoring banner the streams send are rendered by
the pages' views (`views_live` sets the hooks below at import), so the hub itself imports no
template or presenter."""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.db import connections as db_connections

from connections import display
from connections.models import Connection

# Users per IN (…) of the shared poll.
POLL_CHUNK = 500


def db_release() -> None:
    """Close this thread's database connections (with the pool: hand them back), unless one
    is inside a transaction (a test's, say), which closing would break."""
    for conn in db_connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


# --- reading versions (brief database use, connection closed after) ---------------------


def _versions_read(user_ids: list, connection_id=None) -> list[tuple[str, str, str, str]]:
    """[(user_id, connection_id, status, version)] of these users' connections.

    Runs in a worker thread and closes its database connection before returning (with the
    pool, hands it back), so no stream or hub keeps one while it waits."""
    try:
        out = []
        for start in range(0, len(user_ids), POLL_CHUNK):
            rows = Connection.objects.filter(user_id__in=user_ids[start : start + POLL_CHUNK])
            if connection_id is not None:
                rows = rows.filter(pk=connection_id)
            for values in display.versions_values(rows):
                pk = values["id"]
                out.append((str(values["user_id"]), str(pk), values["status"], display.display_version_of(pk, values)))
        return out
    finally:
        db_release()


versions_read = sync_to_async(_versions_read, thread_sensitive=False)


# Whether monitoring runs, by the banner's own rule (presenters.monitoring_status); set by
# views_live, since presenters' imports lead back here. None: the hub does not watch.
monitoring_probe: Callable[[], bool] | None = None


def _monitoring_active_read() -> bool:
    try:
        return monitoring_probe()
    finally:
        db_release()


monitoring_active_read = sync_to_async(_monitoring_active_read, thread_sensitive=False)


# The cards a dashboard's stream sends in its events, set by views_live (fragments' imports
# lead back here): `card_render(user_id, ids)` -> {id: the card, "" for a card that left the
# dashboard}, read once per process for all the user's open pages; `card_finish(card,
# token=, now=)` -> its HTML as this page is served it. None: the stream
# sends "conn-<id>" and pages re-fetch the card.
card_render: Callable | None = None
card_finish: Callable | None = None


# Which of these session keys are still signed in, set by views_live: checked once per change
# batch per process for all of a user's open pages, before a stream sends cards (a re-fetch
# from a page whose session ended is refused; a pushed card must be too).
sessions_alive: Callable | None = None


def _sessions_read(keys: list[str]) -> set[str]:
    try:
        return sessions_alive(keys)
    finally:
        db_release()


sessions_read = sync_to_async(_sessions_read, thread_sensitive=False)


# The summary strip the dashboard's stream sends with a batch of changes, set by views_live:
# `summary_render(user_id, show)` -> HTML. None: the stream says "summary", pages re-fetch it.
summary_render: Callable | None = None


def _summary_read(user_id, show: str) -> str:
    try:
        return summary_render(user_id, show)
    finally:
        db_release()


summary_read = sync_to_async(_summary_read, thread_sensitive=False)


def _cards_read(user_id, ids) -> dict[str, str]:
    try:
        return card_render(user_id, ids)
    finally:
        db_release()


cards_read = sync_to_async(_cards_read, thread_sensitive=False)
