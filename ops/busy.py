""" "Busy" versus "down" for the database, and a 503 "busy" page instead of a 500.

Busy: PostgreSQL is up but has no connection for us right now (this process's pool is
all in use, or the server or role refuses more clients). Every instance shares the same
database, so a load balancer gains nothing by dropping instances for it: readiness stays
200 ("degraded") and pages answer 503 with Retry-After (the styled page; an htmx re-fetch
gets a 204 that keeps what the page shows, common.busy). Down: anything else.
"""

from __future__ import annotations

import logging

from django.db import OperationalError
from django.http import HttpResponse

from common.busy import busy_response_parts

logger = logging.getLogger(__name__)

# What PostgreSQL says when it refuses a client for lack of slots.
_BUSY_MESSAGES = (
    "too many clients already",
    "too many connections for role",
    "too many connections for database",
    "remaining connection slots are reserved",
    "sorry, too many clients",
)


def database_busy(exc: BaseException) -> bool:
    """True when `exc` (or its cause) says the database is up but out of connections."""
    while exc is not None:
        if type(exc).__name__ == "PoolTimeout":
            return True
        text = str(exc).lower()
        if any(message in text for message in _BUSY_MESSAGES):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def pool_saturated(connection) -> bool:
    """This process's pool has every connection out and requests waiting for one."""
    pool = getattr(connection, "pool", None) if connection.vendor == "postgresql" else None
    if pool is None:
        return False
    stats = pool.get_stats()
    return (
        stats.get("pool_available", 0) == 0
        and stats.get("pool_size", 0) >= pool.max_size
        and bool(stats.get("requests_waiting", 0))
    )


class DatabaseBusyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError) or not database_busy(exception):
            return None
        logger.warning("ops.database.busy", extra={"path": request.path})
        status, headers, body = busy_response_parts(htmx=bool(getattr(request, "htmx", False)))
        response = HttpResponse(body, status=status)
        for name, value in headers:
            if name != "content-length":
                response[name] = value
        return response
