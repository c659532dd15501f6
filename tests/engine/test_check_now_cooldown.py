"""The "Check now" cooldown is engine's rule (engine.services), shared by whoever asks for it
with `cooldown=True` (the pages); the end-to-end check is tests/connections/test_throttling.py."""

from __future__ import annotations

import pytest

from connections.models import Connection, ConnectionStatus
from engine.services import CheckTooSoon, check_now_cooldown_open, connection_check_now

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "check-now-cooldown"}}


class Claims:
    """cache.add's contract: the first claim of a key wins until it expires."""

    def __init__(self):
        self.held: dict[str, int] = {}

    def __call__(self, key: str, seconds: int) -> bool:
        if key in self.held:
            return False
        self.held[key] = seconds
        return True


def test_the_first_press_of_the_window_wins():
    claims = Claims()
    assert check_now_cooldown_open("a", cooldown_seconds=10, claim=claims) is True
    assert check_now_cooldown_open("a", cooldown_seconds=10, claim=claims) is False
    assert check_now_cooldown_open("b", cooldown_seconds=10, claim=claims) is True  # per connection
    assert claims.held == {"check-now-cooldown:a": 10, "check-now-cooldown:b": 10}


@pytest.mark.parametrize("seconds", [0, -1])
def test_no_cooldown_configured_lets_every_press_through_without_claiming(seconds):
    claims = Claims()
    assert all(check_now_cooldown_open("a", cooldown_seconds=seconds, claim=claims) for _ in range(3))
    assert claims.held == {}


@pytest.mark.django_db
def test_the_cooldown_is_decided_before_the_connection_is_looked_at(settings, user):
    settings.CACHES = LOCMEM
    settings.CHECK_NOW_COOLDOWN_SECONDS = 60
    connection = Connection.objects.create(
        user=user, broker_slug="sandbox", account_id="1", status=ConnectionStatus.NEEDS_REAUTH
    )
    with pytest.raises(ValueError):  # the first press goes through to the status rule
        connection_check_now(connection, cooldown=True)
    with pytest.raises(CheckTooSoon):
        connection_check_now(connection, cooldown=True)
    with pytest.raises(ValueError):  # callers that do not ask for it (API, admin) are not held
        connection_check_now(connection)
