"""Security finding 7: "Check now" has a per-connection cooldown; live streams a per-user cap."""

from __future__ import annotations

import pytest
import requests
from django.core.cache import cache
from django.urls import reverse

from tests.engine.conftest import world  # noqa: F401
from tests.harness import Browser

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


def test_one_user_cannot_hold_more_live_streams_than_the_cap(stack, user):
    browser = Browser(stack)
    browser.login(user.email, PASSWORD)
    opened: list[requests.Response] = []
    try:
        for _ in range(8):
            opened.append(browser.session.get(f"{stack.url}/connections/stream/", stream=True, timeout=10))
        statuses = [r.status_code for r in opened]
        assert statuses == [200] * 6 + [429] * 2
        assert opened[-1].headers["Retry-After"] == "30"
    finally:
        for response in opened:
            response.close()
    # Closed streams give their slots back.
    import time

    deadline = time.monotonic() + 15
    while True:
        again = browser.session.get(f"{stack.url}/connections/stream/", stream=True, timeout=10)
        again.close()
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert again.status_code == 200
