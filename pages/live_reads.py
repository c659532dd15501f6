"""The live hub's database reads (`pages.live`): each runs in a worker thread and hands its
database connection back before returning, so no open stream holds one while it waits.

What they read: the versions of connections (what changed), the cards and summary strip a
dashboard's stream sends itself (`fragments`), whether the streams' sessions are still signed
in, and whether monitoring runs (the summary strip's banner)."""

from __future__ import annotations

from importlib import import_module

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections as db_connections

from connections import display
from connections.models import Connection
from engine.monitoring import monitoring_status
from pages import fragments

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


def _monitoring_active_read() -> bool:
    """Whether monitoring runs, by the banner's own rule (`monitoring_status`)."""
    try:
        return monitoring_status().active
    finally:
        db_release()


monitoring_active_read = sync_to_async(_monitoring_active_read, thread_sensitive=False)


def sessions_alive(keys: list[str]) -> set[str]:
    """The session keys among `keys` that are still signed in (Django's session store): checked
    once per change batch per process for all of a user's open pages, before a stream sends
    cards (a re-fetch from a page whose session ended is refused; a pushed card must be too)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    return {key for key in keys if store(session_key=key).get("_auth_user_id")}


def _sessions_read(keys: list[str]) -> set[str]:
    try:
        return sessions_alive(keys)
    finally:
        db_release()


sessions_read = sync_to_async(_sessions_read, thread_sensitive=False)


def _summary_read(user_id, show: str) -> str:
    """The summary strip a dashboard's stream sends with a batch of changes."""
    try:
        return fragments.summary_for_stream(user_id, show)
    finally:
        db_release()


summary_read = sync_to_async(_summary_read, thread_sensitive=False)


def _cards_read(user_id, ids) -> dict[str, str]:
    """{id: the card, "" for a card that left the dashboard}, read once per process for all the
    user's open pages (each page finishes its copy: `fragments.card_finish`)."""
    try:
        return fragments.cards_for_stream(user_id, ids)
    finally:
        db_release()


cards_read = sync_to_async(_cards_read, thread_sensitive=False)
