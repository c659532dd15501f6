from tests.fixtures.browser import chromium, page  # noqa: F401 - fixtures for the partner flow tests
