"""pages.selectors.connection_list_archived_for_user (issue 25: the Archived page's query, which
the view used to narrow itself), and the page through it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from connections.models import Connection, ConnectionStatus
from pages.selectors import connection_list_archived_for_user

pytestmark = pytest.mark.django_db


def _disconnected(user, account_id, *, days_ago: int, archived: bool) -> Connection:
    now = timezone.now()
    return Connection.objects.create(
        user=user, broker_slug="sandbox", account_id=account_id, status=ConnectionStatus.DISCONNECTED,
        disconnected_at=now - timedelta(days=days_ago), archived_at=now if archived else None,
    )


def test_only_the_persons_archived_connections_last_disconnected_first(user, other_user):
    older = _disconnected(user, "older", days_ago=3, archived=True)
    newer = _disconnected(user, "newer", days_ago=1, archived=True)
    _disconnected(user, "not-put-away", days_ago=2, archived=False)
    _disconnected(other_user, "theirs", days_ago=1, archived=True)
    Connection.objects.create(user=user, broker_slug="sandbox", account_id="live", status=ConnectionStatus.CONNECTED)
    assert list(connection_list_archived_for_user(user=user)) == [newer, older]


def test_the_archived_page_shows_them(client, user, other_user):
    mine = _disconnected(user, "mine", days_ago=1, archived=True)
    theirs = _disconnected(other_user, "theirs", days_ago=1, archived=True)
    client.force_login(user)
    page = client.get("/connections/archived/")
    assert page.status_code == 200
    text = page.content.decode()
    assert f'id="archived-{mine.pk}"' in text and f'id="archived-{theirs.pk}"' not in text
