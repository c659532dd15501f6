"""Writes that must not be dropped when the database refuses for a moment."""

from __future__ import annotations

import logging
import time

from django.db import DatabaseError, close_old_connections
from django.db import connection as db_connection

from engine.conf import engine_setting

logger = logging.getLogger(__name__)


def db_write_retried(fn, *, seconds: float | None = None):
    """Run a write, retrying while the database refuses (a restart, no free connection): what it
    stores (checks already made, tokens a broker just issued) exists only in memory until then.
    `fn` must be safe to run again after a rolled-back attempt."""
    seconds = float(engine_setting("WRITE_RETRY_SECONDS") if seconds is None else seconds)
    deadline = time.monotonic() + seconds
    delay = 0.25
    while True:
        try:
            return fn()
        except DatabaseError as exc:
            if time.monotonic() >= deadline or db_connection.in_atomic_block:
                raise
            logger.warning("connections.db.write_retry", extra={"error": type(exc).__name__})
            close_old_connections()
            db_connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
