"""The record every admin action leaves, whichever app's admin ran it (pages' Connection admin,
the engine's circuit breaker admin): an entry in Django's admin log and an event on the connection."""

from __future__ import annotations

from connections.models import Connection, ConnectionEvent
from connections.state import connection_event_record


def admin_action_record(*, connection: Connection, user, action: str, result: str) -> ConnectionEvent:
    """The event every admin action leaves on the connection it touched.

    The owner reads the message on their timeline, so it says "an administrator"; who it was
    stays in the event's actor and in Django's admin log, both visible to staff only.
    """
    from django.contrib.admin.models import CHANGE, LogEntry

    LogEntry.objects.log_actions(
        user_id=user.pk,
        queryset=[connection],
        action_flag=CHANGE,
        change_message=f"{action}: {result}"[:2000],
        single_object=True,
    )
    return connection_event_record(
        connection=connection,
        kind=ConnectionEvent.Kind.ADMIN_ACTION,
        actor=user,
        message=f"An administrator ran “{action}”: {result}",
    )
