import re
from datetime import timedelta

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections.models import ConnectionStatus
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db


def _dashboard_queries(client) -> tuple[int, str]:
    from django.core.cache import cache

    cache.clear()  # cold caches each time: the comparison is like with like
    with CaptureQueriesContext(db) as ctx:
        response = client.get(reverse("connections:dashboard"))
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def test_dashboard_query_count_does_not_grow(signed_in, make_connection):
    for i in range(5):
        make_connection(checks=3, broker_slug="sandbox" if i % 2 else "alpaca")
    _dashboard_queries(signed_in)  # the once-a-minute session renewal happens here, not below
    small, page = _dashboard_queries(signed_in)
    assert page.count('class="card conn-card') == 5
    for i in range(45):
        make_connection(checks=3, broker_slug="sandbox" if i % 2 else "alpaca")
    large, page = _dashboard_queries(signed_in)
    assert page.count('class="card conn-card') == 50
    assert large == small, f"{small} queries for 5 connections, {large} for 50"
    assert small <= 11
    # Disconnected cards (with each disconnect's outcome) and the archived count: one more query.
    from connections.models import Connection

    ids = list(Connection.objects.values_list("pk", flat=True)[:12])
    Connection.objects.filter(pk__in=ids).update(status=ConnectionStatus.DISCONNECTED, disconnected_at=timezone.now())
    Connection.objects.filter(pk__in=ids[:4]).update(archived_at=timezone.now())
    with_put_away, page = _dashboard_queries(signed_in)
    assert page.count('class="card conn-card') == 50 - 4
    assert "Archived connections (4)" in page
    assert with_put_away <= small + 1, f"{small} queries without disconnected cards, {with_put_away} with 8"


def test_dashboard_card_contents(signed_in, make_connection):
    connection = make_connection(checks=4, environment="paper")
    page = signed_in.get(reverse("connections:dashboard")).content.decode()
    text = re.sub(r"<[^>]+>", "", page)  # what a person reads
    assert "Sandbox Broker" in page and connection.account_number_masked in page
    assert "Paper" in page
    assert 'class="badge badge--connected"' in page and ">Connected</span>" in page
    assert "93/100" in page and "Excellent" in page and "142 ms" in page
    assert "Last successful check 2 min ago" in text
    assert "Token: refreshes in 7 min" in text
    assert "Last 4 checks: 4 passed, 0 failed" in page
    assert f"sse:conn-{connection.pk}" in page and 'sse-connect="/connections/stream/"' in page
    # JavaScript off: every hx-get has an href, every hx-post form an action and method
    assert f'href="/connections/{connection.pk}/disconnect/"' in page
    assert f'action="/connections/{connection.pk}/check/"' in page and 'method="post"' in page
    assert "Monitoring has not run yet" in page  # no sweep ever: not presented as current


def test_card_fragment_and_stop_polling(signed_in, make_connection):
    connection = make_connection()
    url = reverse("connections:card", args=[connection.pk])
    fragment = signed_in.get(url, headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert "<html" not in body and f'id="card-{connection.pk}"' in body
    connection.status = ConnectionStatus.DISCONNECTED
    connection.save()
    final = signed_in.get(url, headers={"HX-Request": "true"})
    assert final.status_code == 286  # htmx stops polling a connection that no longer changes
    assert "hx-trigger" not in final.content.decode()
    # without htmx: the full page
    assert signed_in.get(url).status_code == 302


def test_fragments_and_stream_are_404_for_other_users(client, other_user, make_connection):
    connection = make_connection()
    client.force_login(other_user)
    for name in ("card", "panel", "connection_stream", "detail"):
        url = reverse(f"connections:{name}", args=[connection.pk])
        assert client.get(url, headers={"HX-Request": "true"}).status_code == 404
    assert client.post(reverse("connections:check_now", args=[connection.pk])).status_code == 404


def test_stream_of_a_signed_out_visitor_says_so_and_ends():
    import asyncio

    from django.test import AsyncClient

    async def read():
        response = await AsyncClient().get(reverse("connections:stream"))
        assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
        return "".join([chunk.decode() async for chunk in response.streaming_content])

    body = asyncio.run(read())
    assert "event: signed-out" in body and "retry: 3600000" in body  # then it ends


def test_fragments_after_the_session_ended_signal_signed_out_not_a_login_page(client, make_connection):
    connection = make_connection()
    headers = {"HX-Request": "true", "HX-Current-URL": "http://testserver/connections/?show=working"}
    for url in (reverse("connections:card", args=[connection.pk]), reverse("connections:summary")):
        response = client.get(url, headers=headers)
        assert response.status_code == 286  # htmx stops polling this element
        assert response["HX-Reswap"] == "none" and response.content == b""
        trigger = response["HX-Trigger"]
        assert "brokerlink:signed-out" in trigger and "next=%2Fconnections%2F%3Fshow%3Dworking" in trigger
    post = client.post(reverse("connections:check_now", args=[connection.pk]), headers=headers)
    assert post.status_code in (286, 403)  # CSRF may answer first; never a login page
    # Without htmx (a plain page load) the login redirect stays.
    assert client.get(reverse("connections:dashboard")).status_code == 302


def test_summary_fragment(signed_in, make_connection):
    make_connection(status=ConnectionStatus.BROKER_OUTAGE)
    body = signed_in.get(reverse("connections:summary"), headers={"HX-Request": "true"}).content.decode()
    assert 'data-count="waiting">1<' in body and 'data-count="working">0<' in body and 'data-count="total">1<' in body


def test_detail_page(signed_in, make_connection):
    connection = make_connection(
        checks=6,
        failing=1,
        status=ConnectionStatus.DEGRADED,
        last_error_category="broker_fault",
        last_error_message="Sandbox Broker had a server error (HTTP 503).",
        last_success_at=timezone.now() - timedelta(minutes=5),
    )
    page = signed_in.get(reverse("connections:detail", args=[connection.pk])).content.decode()
    assert "Broker error:" in page and "HTTP 503" in page
    assert "What it means" in page and "The broker answered with a server error." in page
    assert "What to do next" in page and "retries automatically" in page
    assert "Uptime 24 h" in page and "5 of 6 checks passed" in page
    assert "How the health score is built" in page and "Checks passed" in page
    assert "chart--latency" in page and "chart--uptime" in page
    assert "Access token" in page and "expires in 12 min" in page
    panel = signed_in.get(reverse("connections:panel", args=[connection.pk]), headers={"HX-Request": "true"})
    assert panel.status_code == 200 and f'id="panel-{connection.pk}"' in panel.content.decode()


def test_check_now_returns_the_card_with_the_result(signed_in, make_connection, monkeypatch, settings):
    from pages import views_live

    settings.CHECK_NOW_COOLDOWN_SECONDS = 0  # three presses in a row here; the cooldown has its own test
    connection = make_connection()
    seen = []

    def fake_check(conn, *, actor=None, cooldown=False):
        seen.append(conn.status)
        conn.status = ConnectionStatus.DEGRADED
        conn.last_error_category = "network"
        conn.last_error_message = "Timed out."
        conn.last_check_at = timezone.now()
        conn.save()

    monkeypatch.setattr(views_live, "connection_check_now", fake_check)
    url = reverse("connections:check_now", args=[connection.pk])
    response = signed_in.post(url, headers={"HX-Request": "true", "HX-Target": f"card-{connection.pk}"})
    body = response.content.decode()
    assert response.status_code == 200 and f'id="card-{connection.pk}"' in body
    assert "badge--retrying" in body and "Check finished: Retrying." in body and 'hx-swap-oob="true"' in body
    panel = signed_in.post(url, headers={"HX-Request": "true", "HX-Target": f"panel-{connection.pk}"})
    assert f'id="panel-{connection.pk}"' in panel.content.decode()
    plain = signed_in.post(url)
    assert plain.status_code == 302 and plain["Location"] == reverse("connections:detail", args=[connection.pk])


def test_check_now_on_inactive_connection_explains(signed_in, make_connection):
    connection = make_connection(status=ConnectionStatus.NEEDS_REAUTH)
    response = signed_in.post(reverse("connections:check_now", args=[connection.pk]), follow=True)
    assert "is not checked until it is reconnected." in response.content.decode()


def test_disconnect_dialog_is_htmx_with_plain_form_fallback(signed_in, make_connection):
    connection = make_connection()
    url = reverse("connections:disconnect", args=[connection.pk])
    body = signed_in.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "<dialog" in body and f'hx-post="{url}"' in body and f'action="{url}"' in body
    assert 'hx-select="#disconnect-result"' in body


def test_system_status_is_staff_only(signed_in, user, client):
    assert signed_in.get(reverse("ops:system_status")).status_code == 403
    user.is_staff = True
    user.save()
    client.force_login(user)
    no_factor = client.get(reverse("ops:system_status"))
    assert no_factor.status_code == 302 and no_factor["Location"] == "/accounts/2fa/"  # enrol a factor first
    with_second_factor(user)
    not_this_session = client.get(reverse("ops:system_status"))  # enrolled, not used in this session
    assert not_this_session.status_code == 302 and "/accounts/2fa/reauthenticate/" in not_this_session["Location"]
    client.force_login(user)  # a sign-in that passed the factor (tests.support)
    page = client.get(reverse("ops:system_status")).content.decode()
    assert 'data-service="database"' in page and 'data-service="workers"' in page
    assert 'data-broker="sandbox"' in page
    assert 'data-monitoring="stopped"' in page


def test_system_status_without_workers_beat_or_sweeps_is_degraded_and_says_why(client, user, settings):
    """Database and Redis answer (the test's own), no worker or beat has reported, no sweep has
    run: the page says Degraded, not Critical, and names both reasons."""
    settings.HEALTH_CHECK_TIMEOUT_SECONDS = 30  # a deadline for a failure only: a loaded machine is not an outage
    user.is_staff = True
    user.save()
    with_second_factor(user)
    client.force_login(user)
    page = client.get(reverse("ops:system_status")).content.decode()
    assert 'data-overall="degraded"' in page
    assert "a service is degraded" in page and "monitoring is not running" in page


def test_system_status_badge_counts_open_alerts(signed_in, user, client):
    from django.utils import timezone

    from engine.models import SweepRun
    from ops.models import Alert

    user.is_staff = True
    user.save()
    with_second_factor(user)  # staff pages need one
    client.force_login(user)
    SweepRun.objects.create(owner="t", started_at=timezone.now())
    Alert.objects.create(key="k", kind="high_error_rate", severity="critical", message="Errors at Sandbox Broker")
    page = client.get(reverse("ops:system_status")).content.decode()
    assert 'data-overall="healthy"' not in page
    assert "1 critical alert open" in page


def test_health_explained_with_the_checks_in_but_no_score_yet(signed_in, make_connection):
    """Issue 27 (Low): it said "Not enough data yet: 5 of the 5 checks needed"."""
    connection = make_connection(checks=5, health_score=None, quality="")
    text = re.sub(r"\s+", " ", signed_in.get(reverse("connections:detail", args=[connection.pk])).content.decode())
    assert "<strong>Not scored yet</strong>: the 5 checks needed since the last (re)connect are in" in text
    assert "Not enough data yet" not in text and "5 of the 5" not in text
