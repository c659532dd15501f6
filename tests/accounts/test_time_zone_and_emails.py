"""Time zone: the browser's on a first visit (never over a chosen one), the settings form,
labelled times on pages, in emails and in admin."""

from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

pytestmark = pytest.mark.django_db


def test_the_browser_zone_is_kept_only_while_none_is_set(client, user):
    client.force_login(user)
    assert client.post("/settings/time-zone/", {"time_zone": "Europe/Paris", "detected": "1"}).status_code == 204
    user.refresh_from_db()
    assert user.time_zone == "Europe/Paris"
    client.post("/settings/time-zone/", {"time_zone": "Asia/Tokyo", "detected": "1"})
    user.refresh_from_db()
    assert user.time_zone == "Europe/Paris"
    assert client.post("/settings/time-zone/", {"time_zone": "Mars/Olympus", "detected": "1"}).status_code == 400
    # The settings form changes it whenever asked.
    page = client.post("/settings/time-zone/", {"time_zone": "Asia/Tokyo"}, follow=True)
    assert "Time zone set to Asia/Tokyo." in page.content.decode()
    user.refresh_from_db()
    assert user.time_zone == "Asia/Tokyo"


def test_pages_show_times_in_the_person_zone_labelled(client, user):
    from connections.models import Connection, ConnectionStatus
    from connections.state import connection_transition

    user.time_zone = "Asia/Tokyo"
    user.save()
    conn = Connection.objects.create(user=user, broker_slug="sandbox", account_id="A-1", status="connected")
    connection_transition(connection=conn, to_status=ConnectionStatus.DEGRADED, message="HTTP 503")
    client.force_login(user)
    html = client.get(f"/connections/{conn.pk}/").content.decode()
    local = timezone.localtime(conn.status_changed_at, timezone=ZoneInfo("Asia/Tokyo"))
    assert f"{local:%Y-%m-%d %H:%M} JST" in html


def test_account_emails_speak_as_brokerlink_not_the_request_host(client, user, settings):
    from django.core import mail

    settings.SITE_URL = "https://brokerlink.example.com"
    client.post("/accounts/password/reset/", {"email": user.email})
    (message,) = mail.outbox
    assert message.subject.startswith("[brokerlink] ")
    assert "Hello from" not in message.body and "testserver" not in message.body.split("http")[0]
    assert message.body.startswith("Hello,")
    assert "https://brokerlink.example.com" in message.body
