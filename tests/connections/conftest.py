import pytest

from tests.connections.harness import BrokerlinkServer, Browser

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def brokerlink(django_db_setup, django_db_blocker):
    """brokerlink with the sandbox mounted, one process per test module (tests share it, not data)."""
    server = BrokerlinkServer.start(BROKER_READ_TIMEOUT_SECONDS="2")
    yield server
    server.stop()


@pytest.fixture
def stack(brokerlink, transactional_db):
    """The server, with the sandbox's demo login ready for this test's (fresh) data."""
    brokerlink.sandbox._ok(brokerlink.sandbox.control("POST", "users", {"demo": True}))
    return brokerlink


@pytest.fixture
def sandbox_app(stack):
    """The sandbox broker configured in brokerlink: (BrokerApp, sandbox client JSON)."""
    return stack.broker_app("sandbox", rotate_refresh=True)


@pytest.fixture
def browser(stack, user):
    browser = Browser(stack)
    browser.login(user.email, PASSWORD)
    return browser
