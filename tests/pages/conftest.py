from datetime import timedelta
from itertools import count

import pytest
from django.utils import timezone

from connections.models import Connection, ConnectionStatus
from engine.ring import Check
from tests.engine.history import history_replace

_numbers = count(1000)


@pytest.fixture
def make_connection(user):
    """make(**fields) -> a saved Connection of `user` (sandbox broker, connected, with tokens)."""

    def make(*, checks: int = 0, failing: int = 0, **fields) -> Connection:
        number = next(_numbers)
        now = timezone.now()
        values = {
            "user": user,
            "broker_slug": "sandbox",
            "account_id": f"ACC{number}",
            "account_number_masked": f"••{number}",
            "status": ConnectionStatus.CONNECTED,
            "access_token_sealed": "sealed-a",
            "refresh_token_sealed": "sealed-r",
            "access_expires_at": now + timedelta(minutes=12, seconds=30),
            "last_success_at": now - timedelta(minutes=2, seconds=5),
            "last_check_at": now - timedelta(minutes=2, seconds=5),
            "last_latency_ms": 142,
            "health_score": 93,
            "quality": "excellent",
        }
        values.update(fields)
        connection = Connection.objects.create(**values)
        if checks:
            history_replace(
                connection,
                [
                    Check(
                        checked_at=now - timedelta(minutes=i + 1),
                        ok=i >= failing,
                        latency_ms=100 + i,
                        category="" if i >= failing else "broker_fault",
                    )
                    for i in range(checks)
                ],
            )
        return connection

    return make


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


# Chromium fixtures (`chromium`, `page`, `phone_page`) for the browser tests in this folder.
from tests.fixtures.browser import chromium, page, phone_page  # noqa: E402, F401
