"""invalid_client on refresh: the deployment's broker app is misconfigured, not the users'
grants. The app is flagged once, connections show a configuration problem (not "reconnect"),
users are told to contact the administrator, and nobody gets an email per connection."""

from __future__ import annotations

import logging

import pytest
from django.core import mail

from brokers.services import broker_app_clear_config_problem, broker_catalog
from connections.models import ConnectionEvent, ConnectionStatus
from engine.sweep import sweep_run
from pages.presenters.cards import card_for
from tests.engine.conftest import time_passes

pytestmark = pytest.mark.django_db(transaction=True)

CONTACT_ADMIN = "Contact your brokerlink administrator"


def flag_records(caplog) -> list:
    return [r for r in caplog.records if r.getMessage() == "brokers.app.config_problem"]


def test_a_wrong_client_secret_flags_the_app_once_and_tells_users_to_contact_the_admin(
    world, user, other_user, client, caplog
):
    caplog.set_level(logging.WARNING, logger="brokers")
    mine = world.connection(expires_in=30)  # due for a refresh
    theirs = world.connection(expires_in=30, user=other_user)
    correct_secret = world.client["client_secret"]
    world.app.client_secret = "not-the-secret-the-broker-issued"  # noqa: S105
    world.app.save()
    before = world.counters()

    sweep_run()

    world.app.refresh_from_db()
    assert "invalid_client" in world.app.config_problem
    flagged_at = world.app.config_problem_at
    assert flagged_at is not None
    assert len(flag_records(caplog)) == 1  # two connections, one flag
    assert world.counters()["token_requests"] - before["token_requests"] == 2
    for conn in (mine, theirs):
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.DEGRADED  # not needs_reauth: the grant is fine
        assert conn.last_error_category == "configuration"
        card = card_for(conn)
        assert not card.needs_reconnect
        assert card.error.category_label == "App credentials rejected"
        assert card.state.label == "Needs an administrator"
        assert card.error.next_step.startswith(CONTACT_ADMIN)
    assert mail.outbox == []
    # New connections to this broker are held back until an administrator fixes the app.
    entry = next(e for e in broker_catalog() if e.slug == "sandbox")
    assert not entry.configured and "administrator" in entry.admin_hint

    # What the person sees on the connection's page.
    client.force_login(user)
    page = client.get(f"/connections/{mine.pk}/").content.decode()
    assert CONTACT_ADMIN in page
    assert "Needs re-authentication" not in page and "Needs you" not in page

    # Hours pass (more sweeps than the retry budget): the app is not flagged again, nobody's
    # connection fails one by one, nobody is emailed, and the broker sees a few calls an hour.
    calls = world.counters()["token_requests"]
    for _ in range(10):
        time_passes(3600)
        sweep_run()
    world.app.refresh_from_db()
    assert world.app.config_problem_at == flagged_at
    assert len(flag_records(caplog)) == 1
    assert mail.outbox == []
    for conn in (mine, theirs):
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.DEGRADED
        assert conn.last_error_category == "configuration"
        assert not conn.events.filter(to_status=ConnectionStatus.NEEDS_REAUTH).exists()
        assert not conn.events.filter(kind=ConnectionEvent.Kind.NOTIFIED).exists()
    assert world.counters()["token_requests"] - calls <= 2 * 10

    # The administrator puts the right secret back and clears the problem: both recover.
    world.app.client_secret = correct_secret
    world.app.save()
    broker_app_clear_config_problem(world.app)
    time_passes(3600)
    sweep_run()
    for conn in (mine, theirs):
        conn.refresh_from_db()
        assert conn.status == ConnectionStatus.CONNECTED
        assert conn.last_error_category == ""
    assert world.counters()["rotated_reuses"] == 0
    assert mail.outbox == []  # nobody was told "reconnect", so no "recovered" either
