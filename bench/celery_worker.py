"""The project's Celery app, plus a statement counter for `bench/heartbeat.py` (not a test).

    celery -A bench.celery_worker worker ...

Each pool process counts the SQL statements it sends (every database connection gets an
execute wrapper) and, after each task, writes its count to `$BENCH_SQL_DIR/<pid>`: the
benchmark reads SQL per check of the real worker processes without touching the app's code.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery.signals import task_postrun
from django.db.backends.signals import connection_created

from config.celery import app

__all__ = ["app"]

_count = {"n": 0}


def _counting(execute, sql, params, many, context):
    _count["n"] += 1
    return execute(sql, params, many, context)


def _wrap(sender, connection, **kwargs):
    if _counting not in connection.execute_wrappers:
        connection.execute_wrappers.append(_counting)


connection_created.connect(_wrap, dispatch_uid="bench-sql-count")


@task_postrun.connect
def _write_count(**kwargs):
    folder = os.environ.get("BENCH_SQL_DIR")
    if folder:
        Path(folder, str(os.getpid())).write_text(str(_count["n"]))
