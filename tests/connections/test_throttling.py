"""Security finding 7: "Check now" has a per-connection cooldown (the per-user cap on live streams
is main's LIVE_MAX_STREAMS_PER_USER, tested in tests/pages/test_scale.py)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.urls import reverse

from tests.engine.conftest import world  # noqa: F401

PASSWORD = "correct horse battery"


@pytest.mark.django_db(transaction=True)
def test_check_now_presses_within_the_cooldown_make_one_broker_call(world, client):  # noqa: F811
    cache.clear()
    conn = world.connection()
    client.force_login(world.user)
    before = world.counters()["account_calls"]
    url = reverse("connections:check_now", args=[conn.pk])
    answers = [client.post(url, follow=True).content.decode() for _ in range(5)]
    assert world.counters()["account_calls"] - before == 1
    assert "Check passed." in answers[0]
    assert all("Checked moments ago" in answer for answer in answers[1:])
