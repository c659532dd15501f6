import pytest

from tests.harness import Browser

PASSWORD = "correct horse battery"


@pytest.fixture
def sandbox_app(stack):
    """The sandbox broker configured in brokerlink: (BrokerApp, sandbox client JSON)."""
    return stack.broker_app("sandbox", rotate_refresh=True)


@pytest.fixture
def browser(stack, user):
    browser = Browser(stack)
    browser.login(user.email, PASSWORD)
    return browser
