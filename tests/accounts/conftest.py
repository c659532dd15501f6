import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Every account test starts with no rate-limit count: allauth counts sign-ups, logins and
    failures per address in the cache, which the run's other tests share."""
    cache.clear()
    yield
    cache.clear()
