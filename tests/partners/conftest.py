import pytest

from brokers.models import BrokerApp
from partners.services import partner_app_create
from tests.fixtures.browser import chromium, page  # noqa: F401 - fixtures for the partner flow tests
from tests.partners.support import RETURN


@pytest.fixture
def sandbox_app(db):
    app = BrokerApp(broker_slug="sandbox", environment="paper", client_id="client-1")
    app.client_secret = "secret-1"
    app.save()
    return app


@pytest.fixture
def tracker(db):
    return partner_app_create(name="Tracker", return_urls=[RETURN])


@pytest.fixture
def bot(db):
    return partner_app_create(name="BotPlatform", return_urls=["https://bot.example/back"])
