"""What a person sees of a connection, as a short version string: open pages re-fetch a card
only when this changes, not on every heartbeat's last check time.

The version covers what the card and detail panel show: status, health score and quality,
the current problem, the retry count, the token phrase's inputs (expiry, deadline), the
nickname, and whether the card was archived (put away: it leaves open dashboards).
"Last successful check" and latency change at every passing check; re-fetching every card
of every open page every minute for them is what exhausted the web box, so they count only
once per `QUIET_SECONDS` window. Each connection's window is shifted by a phase taken from
its id, so the windows of a thousand connections do not all end in the same sweep.

Used by the outbox (status changes), the engine's write phase (the other rows whose version
changed) and the live hub's database poll (compare with the version it last sent), so all
agree on "changed".
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

# A passing check alone refreshes an open card at most this often.
QUIET_SECONDS = 300
# The columns the version is made of (for `values_list` reads of many rows at once).
FIELDS = (
    "status",
    "health_score",
    "quality",
    "last_error_category",
    "last_error_message",
    "retry_attempt",
    "access_expires_at",
    "refresh_expires_at",
    "reauth_deadline_at",
    "last_success_at",
    "nickname",
    "archived_at",
)


def versions_values(rows):
    """`rows.values()` of a Connection queryset: id, user_id and FIELDS (the engine's ones
    from the connection's EngineState, in the same query)."""
    from django.db.models import F

    from connections.models import ENGINE_FIELDS

    plain = [name for name in FIELDS if name not in ENGINE_FIELDS]
    joined = {name: F(f"engine_state__{name}") for name in FIELDS if name in ENGINE_FIELDS}
    return rows.values("id", "user_id", *plain, **joined)


def _epoch(moment) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _quiet_window(pk, last_success_at) -> int | None:
    if last_success_at is None:
        return None
    # A model's pk is a UUID already: its text is parsed only for other values (twice per checked
    # row: docs/benchmarks.md#where-a-workers-cpu-per-check-goes-issue-25).
    phase = (pk if isinstance(pk, uuid.UUID) else uuid.UUID(str(pk))).int % QUIET_SECONDS
    return int((last_success_at.timestamp() + phase) // QUIET_SECONDS)


def display_version_of(pk, values: dict) -> str:
    """The version of one row given its FIELDS (a dict)."""
    key = [
        values["status"],
        values["health_score"],
        values["quality"],
        values["last_error_category"],
        values["last_error_message"],
        values["retry_attempt"],
        _epoch(values["access_expires_at"]),
        _epoch(values["refresh_expires_at"]),
        _epoch(values["reauth_deadline_at"]),
        _quiet_window(pk, values["last_success_at"]),
        values["nickname"],
        _epoch(values["archived_at"]),
    ]
    return hashlib.blake2b(json.dumps(key).encode(), digest_size=8).hexdigest()


def display_version(connection) -> str:
    """The version of a Connection instance (its current in-memory fields)."""
    return display_version_of(connection.pk, {name: getattr(connection, name) for name in FIELDS})


# What a page tells its next event stream it shows (`?seen=`, pages.live.seen_parse):
# per card or panel, the first digits of its connection id and of its display version.
# (A UUID's text starts with 8 hex digits, so the id's digits need no parsing.)
SEEN_ID_DIGITS = 8
SEEN_VERSION_DIGITS = 8


def seen_id(pk) -> str:
    return str(pk)[:SEEN_ID_DIGITS]


def seen_piece(pk, version: str) -> str:
    """This connection at this version, as a page lists it in `?seen=` (fixed width, no separator)."""
    return seen_id(pk) + version[:SEEN_VERSION_DIGITS]


def display_versions(rows: Iterable) -> dict[str, str]:
    """{connection id: version} of Connection instances, e.g. before a batch changes them."""
    return {str(row.pk): display_version(row) for row in rows}


# --- telling open pages ------------------------------------------------------------------


def live_channel() -> str:
    """One Redis channel per deployment (cache prefix); every web process listens to it once."""
    prefix = getattr(settings, "CACHES", {}).get("default", {}).get("KEY_PREFIX", "") or ""
    return f"{prefix}brokerlink:live"


_client = None


def _redis():
    global _client
    if _client is None:
        import redis

        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _client


def changes_publish(changes: list[list[str]]) -> None:
    """Publish [[user_id, connection_id, status, version], …] now. Best effort, never raises:
    without Redis (or while it is down) the web processes find the change by polling."""
    if not changes or not getattr(settings, "REDIS_URL", ""):
        return
    try:
        _redis().publish(live_channel(), json.dumps({"changes": changes}))
    except Exception as exc:  # noqa: BLE001 - pages fall back to the database poll
        logger.warning("connections.display.publish_failed", extra={"error": type(exc).__name__})


def display_changed_publish(rows: Iterable, before: dict[str, str]) -> int:
    """After commit, tell open pages about the rows whose version differs from `before`
    (as taken by `display_versions` before they changed). Returns how many changed.

    Only for changes that are not status changes (health score, quality, the error shown, a
    token's expiry): a status change reaches open pages once, from its event through
    `connections.outbox`, so callers leave the rows they transitioned out."""
    changes = []
    for row in rows:
        version = display_version(row)
        if before.get(str(row.pk)) != version:
            changes.append([str(row.user_id), str(row.pk), row.status, version])
    if changes and getattr(settings, "REDIS_URL", ""):
        try:
            transaction.on_commit(lambda: changes_publish(changes))
        except Exception as exc:  # noqa: BLE001
            logger.warning("connections.display.publish_failed", extra={"error": type(exc).__name__})
    return len(changes)


def connection_changed_publish(connection) -> None:
    """After commit, tell open pages that this connection's card changed for a reason that is
    not a status change (a new nickname, a card put away). Best effort, never raises."""
    change = [str(connection.user_id), str(connection.pk), connection.status, display_version(connection)]
    transaction.on_commit(lambda: changes_publish([change]))
