"""CSV exports: the history and the daily uptime (uptime days plus the check log), in the person's zone."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from connections.models import Connection
from engine.ring import Check
from pages.exports import daily_uptime
from tests.engine.history import history_replace

pytestmark = pytest.mark.django_db


def test_daily_uptime_merges_uptime_days_and_the_check_log_by_local_day(user, other_user, client):
    conn = Connection.objects.create(user=user, broker_slug="sandbox", account_id="A-1", status="connected")
    now = datetime(2026, 12, 2, 12, 30, tzinfo=ZoneInfo("UTC"))
    # Two hours on 1 December (UTC), one of them 23:00 UTC = 2 December in Tokyo: an uptime day
    # now (today's first check left it behind).
    history = [Check(now.replace(day=1, hour=10, minute=0) + timedelta(seconds=i), i % 10 != 0) for i in range(60)]
    history += [Check(now.replace(day=1, hour=23, minute=0) + timedelta(seconds=i), True) for i in range(60)]
    # Checks this morning, in the check log.
    history += [Check(now - timedelta(minutes=i), i % 4 != 0) for i in range(8)]
    history_replace(conn, history)
    assert daily_uptime(conn, now=now) == [(now.date().replace(day=1), 120, 114), (now.date(), 8, 6)]
    with timezone.override(ZoneInfo("Asia/Tokyo")):
        assert daily_uptime(conn, now=now) == [(now.date().replace(day=1), 60, 54), (now.date(), 68, 66)]

    client.force_login(user)
    body = client.get(f"/connections/{conn.pk}/uptime.csv")
    assert body["Content-Type"].startswith("text/csv")
    assert 'filename="brokerlink-sandbox-A-1-daily-uptime.csv"' in body["Content-Disposition"]
    # Someone else's connection: 404, as for every connection page.
    client.force_login(other_user)
    assert client.get(f"/connections/{conn.pk}/history.csv").status_code == 404
