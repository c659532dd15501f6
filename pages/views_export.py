"""CSV downloads of one connection (its owner only, like every connection page)."""

from __future__ import annotations

import csv

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.views.decorators.http import require_GET

from pages.exports import history_rows, uptime_rows
from pages.selectors import connection_get_for_user


def _csv(rows, filename: str) -> HttpResponse:
    # Built whole (a connection's history is bounded by retention): the rows read the database,
    # which a streamed body would do after the view returned, outside the request's thread.
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    csv.writer(response).writerows(rows)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _filename(connection, what: str) -> str:
    safe = "".join(ch if ch.isalnum() else "-" for ch in (connection.nickname or connection.account_id))[:40]
    return f"brokerlink-{connection.broker_slug}-{safe}-{what}.csv"


@login_required
@require_GET
def history_csv(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    return _csv(history_rows(connection), _filename(connection, "history"))


@login_required
@require_GET
def uptime_csv(request, connection_id):
    connection = connection_get_for_user(user=request.user, connection_id=connection_id)
    return _csv(uptime_rows(connection), _filename(connection, "daily-uptime"))
