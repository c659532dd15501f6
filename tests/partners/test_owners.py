"""An end user's connection beside brokerlink users' ones: webhooks reach only its app's
endpoints, no email goes out for it, and the admin shows its owner."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import override_settings

from connections.models import Connection, ConnectionStatus
from connections.state import connection_transition
from engine.notifications import expiry_warnings_send, notifications_dispatch
from ops.models import WebhookDelivery, WebhookEndpoint
from ops.webhooks import webhook_secret_new
from partners.services import end_user_upsert, partner_app_create
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db(transaction=True)


def endpoint(url: str, app=None) -> WebhookEndpoint:
    row = WebhookEndpoint(url=url, app=app)
    row.secret = webhook_secret_new()
    row.save()
    return row


@pytest.fixture
def apps():
    return partner_app_create(name="Tracker"), partner_app_create(name="Rival")


def test_webhooks_go_only_to_the_owning_apps_endpoints(apps, user):
    tracker, rival = apps
    tracker_hook = endpoint("https://tracker.example/hooks", tracker)
    endpoint("https://rival.example/hooks", rival)
    operator_hook = endpoint("https://ops.example/hooks")
    theirs = Connection.objects.create(
        end_user=end_user_upsert(app=tracker, external_id="u-1"), broker_slug="sandbox", account_id="a",
        status=ConnectionStatus.CONNECTED,
    )
    persons = Connection.objects.create(user=user, broker_slug="sandbox", account_id="b",
                                        status=ConnectionStatus.CONNECTED)
    connection_transition(connection=theirs, to_status=ConnectionStatus.NEEDS_REAUTH, message="Dead grant.")
    connection_transition(connection=persons, to_status=ConnectionStatus.NEEDS_REAUTH, message="Dead grant.")
    by_connection = {d.connection_id: d for d in WebhookDelivery.objects.all()}
    assert set(WebhookDelivery.objects.filter(connection_id=theirs.pk).values_list("endpoint", flat=True)) == {
        tracker_hook.pk
    }
    assert set(WebhookDelivery.objects.filter(connection_id=persons.pk).values_list("endpoint", flat=True)) == {
        operator_hook.pk
    }
    data = by_connection[theirs.pk].payload["data"]["connection"]
    assert data["end_user_id"] == "u-1" and data["user_email"] == ""


@override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
def test_no_email_for_an_end_users_broken_connection(apps):
    tracker, _rival = apps
    connection = Connection.objects.create(
        end_user=end_user_upsert(app=tracker, external_id="u-1", email="ada@tracker.example"),
        broker_slug="sandbox", account_id="a", status=ConnectionStatus.CONNECTED,
    )
    connection_transition(connection=connection, to_status=ConnectionStatus.NEEDS_REAUTH, message="Dead grant.")
    assert notifications_dispatch() == 0
    assert expiry_warnings_send() == 0
    assert mail.outbox == []


def test_the_admin_shows_an_end_users_connection_and_its_owner(apps, client, django_user_model):
    tracker, _rival = apps
    connection = Connection.objects.create(
        end_user=end_user_upsert(app=tracker, external_id="u-1"), broker_slug="sandbox", account_id="a",
        status=ConnectionStatus.CONNECTED,
    )
    admin = with_second_factor(django_user_model.objects.create_superuser(email="root@example.com", password="pw"))
    client.force_login(admin)
    listing = client.get("/admin/connections/connection/")
    assert listing.status_code == 200 and "Tracker: u-1 (partner app end user)" in listing.content.decode()
    assert client.get(f"/admin/connections/connection/{connection.pk}/change/").status_code == 200
    assert client.get("/admin/partners/partnerapp/add/").status_code == 200
    assert client.get("/admin/partners/connectsession/").status_code == 200
