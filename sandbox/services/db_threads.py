"""The few threads the sandbox's async endpoints run their database work on."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

# The account endpoint's database work runs on these few threads, each with one persistent
# connection. (Django's ASGI handler gives each request its own thread for thread-sensitive
# code: 200 concurrent heartbeats would open 200 PostgreSQL connections.)
db_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-db")


def on_db_thread(fn, *args):
    from django.db import InterfaceError, OperationalError, connection

    try:
        return fn(*args)
    except (OperationalError, InterfaceError):
        connection.close()  # a dropped connection: reconnect once
        return fn(*args)
