"""Review of issue 28: an app key limited to some brokers creates sessions for those brokers
only, and cannot reach (even to reconnect) a connection of a broker outside its list."""

from __future__ import annotations

import pytest

from api.models import Scope
from api.services import service_key_create
from brokers.models import BrokerApp
from connections.models import Connection, ConnectionStatus
from partners.models import ConnectSession
from partners.services import end_user_upsert, partner_app_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def sandbox_configured():
    app = BrokerApp(broker_slug="sandbox", environment="paper", client_id="client-1")
    app.client_secret = "secret-1"
    app.save()


def test_a_broker_limited_app_key_stays_within_its_brokers(client):
    tracker = partner_app_create(name="Tracker")
    _k, key = service_key_create(name="t", scopes=[Scope.CONNECT_SESSIONS], app=tracker, broker_slugs=["alpaca"])
    headers = {"Authorization": f"Bearer {key}"}
    outside = Connection.objects.create(
        end_user=end_user_upsert(app=tracker, external_id="u-1"), broker_slug="sandbox", account_id="a",
        status=ConnectionStatus.CONNECTED,
    )

    def create(body):
        return client.post("/api/v1/connect-sessions", body, content_type="application/json", headers=headers)

    assert create({"connection_id": str(outside.pk)}).status_code == 404  # as if it did not exist
    assert create({"end_user": {"id": "u-1"}, "brokers": ["sandbox"]}).status_code == 400
    created = create({"end_user": {"id": "u-1"}})
    if created.status_code == 201:  # alpaca configured here: the session offers alpaca only
        assert ConnectSession.objects.get().brokers == ["alpaca"]
    else:  # not configured in this deployment: nothing this key may offer
        assert created.status_code == 400
    assert not ConnectSession.objects.filter(brokers=[]).exists()
