import pytest

from tests.connections.conftest import PASSWORD
from tests.harness import BrokerlinkServer, Browser


@pytest.fixture(scope="module")
def emulating(django_db_setup, django_db_blocker):
    """brokerlink whose real broker profiles are all served by the mounted sandbox emulating them."""
    server = BrokerlinkServer.start(SANDBOX_EMULATE_BROKERS="*")
    yield server
    server.stop()


@pytest.fixture
def contract_browser(emulating, transactional_db, user):
    emulating.sandbox._ok(emulating.sandbox.control("POST", "users", {"demo": True}))
    browser = Browser(emulating)
    browser.login(user.email, PASSWORD)
    return browser
