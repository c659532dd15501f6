"""Cards are rendered through their template on every view: the words of the moment, the new
content as soon as something shown changes, each browser's own CSRF token, and a fixed
number of queries however many cards."""

import re
from datetime import timedelta

import pytest
from django.db import connection as db
from django.middleware.csrf import _unmask_cipher_token
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from engine.models import EngineState

pytestmark = pytest.mark.django_db


def _get(client) -> tuple[list[str], str]:
    with CaptureQueriesContext(db) as ctx:
        response = client.get(reverse("connections:dashboard"))
    assert response.status_code == 200
    return [q["sql"] for q in ctx.captured_queries], response.content.decode()


def test_the_dashboard_reads_the_same_queries_for_one_card_or_five(signed_in, make_connection):
    make_connection(checks=5)
    _get(signed_in)  # the session's once-a-minute renewal (accounts.middleware) falls here
    one, _ = _get(signed_in)
    for _ in range(4):
        make_connection(checks=5)
    five, page = _get(signed_in)
    assert len(five) == len(one)
    assert page.count('class="card conn-card') == 5
    assert "Last 5 checks: 5 passed, 0 failed" in page


def test_a_card_tells_the_time_as_it_is_when_served(signed_in, make_connection, monkeypatch):
    from django.utils import timezone

    import pages.fragments

    make_connection(checks=3)
    _, page = _get(signed_in)
    text = re.sub(r"<[^>]+>", "", page)
    assert "Last successful check 2 min ago" in text and "refreshes in 7 min" in text
    later = timezone.now() + timedelta(seconds=65)
    monkeypatch.setattr(pages.fragments.timezone, "now", lambda: later)
    _, page = _get(signed_in)
    text = re.sub(r"<[^>]+>", "", page)
    assert "Last successful check 3 min ago" in text and re.search(r"refreshes in [56] min", text)
    assert "2 min ago" not in text and "12 min" not in text


def test_a_change_someone_sees_renders_the_card_again(signed_in, make_connection):
    connection = make_connection(checks=2)
    _, page = _get(signed_in)
    assert "93/100" in page
    EngineState.objects.filter(pk=connection.pk).update(health_score=41)
    _, page = _get(signed_in)
    assert "41/100" in page and "93/100" not in page


def test_reused_card_carries_each_browsers_own_csrf_token(user, make_connection):
    make_connection()
    tokens = []
    for _ in range(2):  # two browsers of the same person: two CSRF cookies
        client = Client(enforce_csrf_checks=True)
        client.force_login(user)
        client.get(reverse("connections:dashboard"))  # sets the CSRF cookie
        page = client.get(reverse("connections:dashboard")).content.decode()
        card = page[page.index('class="card conn-card') :]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', card).group(1)
        assert _unmask_cipher_token(token) == client.cookies["csrftoken"].value
        tokens.append(client.cookies["csrftoken"].value)
    assert tokens[0] != tokens[1]
