"""Django's database sessions, read with one precompiled statement.

Every signed-in page reads its session first. The ORM's `get()` compiles the same query on
every request; this store sends the statement directly and builds the row itself (~0.15 ms
of CPU per page view, measured with bench/pages.py's database). Storage, cookie, expiry and
writes are Django's own (SESSION_ENGINE = "accounts.sessions")."""

from __future__ import annotations

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import connections, router
from django.utils import timezone


class SessionStore(DatabaseSessionStore):
    def _get_session_from_db(self):
        model = self.model
        if not self.session_key:  # Django's get() finds nothing for these either
            self._session_key = None
            return None
        db = connections[router.db_for_read(model)]
        table = db.ops.quote_name(model._meta.db_table)
        with db.cursor() as cursor:
            cursor.execute(
                f"SELECT session_key, session_data, expire_date FROM {table} "  # noqa: S608 - the model's table
                "WHERE session_key = %s AND expire_date > %s",
                [self.session_key, timezone.now()],
            )
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        return model(session_key=row[0], session_data=row[1], expire_date=row[2])
