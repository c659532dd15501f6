import pytest
from django.db import IntegrityError, connection
from django.urls import reverse

from brokers.models import BrokerApp
from brokers.services import (
    broker_app_clear_config_problem,
    broker_app_flag_config_problem,
    broker_app_for,
    broker_catalog,
)
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-client-secret-value-xyz"


@pytest.fixture
def alpaca_app():
    app = BrokerApp(broker_slug="alpaca", environment="paper", client_id="alpaca-client")
    app.client_secret = SECRET
    app.save()
    return app


@pytest.fixture
def admin_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser(email="root@example.com", password="correct horse battery")
    with_second_factor(admin)
    client.force_login(admin)
    return client


def test_client_secret_is_encrypted_at_rest(alpaca_app):
    with connection.cursor() as cursor:
        cursor.execute("SELECT client_secret_sealed FROM brokers_brokerapp WHERE id = %s", [alpaca_app.pk])
        (raw,) = cursor.fetchone()
        cursor.execute("SELECT * FROM brokers_brokerapp WHERE id = %s", [alpaca_app.pk])
        row = cursor.fetchone()
    assert raw and SECRET not in raw
    assert not any(SECRET in str(value) for value in row)
    assert BrokerApp.objects.get(pk=alpaca_app.pk).client_secret == SECRET


def test_sealed_secret_copied_to_another_row_does_not_open(alpaca_app):
    other = BrokerApp.objects.create(broker_slug="alpaca", environment="live", client_id="c2")
    BrokerApp.objects.filter(pk=other.pk).update(client_secret_sealed=alpaca_app.client_secret_sealed)
    with pytest.raises(Exception):  # noqa: B017 - the vault's own error type; any failure is fail-closed
        _ = BrokerApp.objects.get(pk=other.pk).client_secret


def test_unique_per_broker_and_environment(alpaca_app):
    with pytest.raises(IntegrityError):
        BrokerApp.objects.create(broker_slug="alpaca", environment="paper", client_id="dupe")


def test_effective_redirect_uri_defaults_to_site_url(settings, alpaca_app):
    settings.SITE_URL = "https://brokerlink.example"
    assert alpaca_app.effective_redirect_uri == "https://brokerlink.example/connections/callback/alpaca/"
    alpaca_app.redirect_uri = "https://other.example/cb"
    assert alpaca_app.effective_redirect_uri == "https://other.example/cb"


def test_broker_app_for_returns_enabled_apps_only(alpaca_app):
    assert broker_app_for("alpaca", "paper") == alpaca_app
    assert broker_app_for("alpaca") == alpaca_app
    assert broker_app_for("alpaca", "live") is None
    BrokerApp.objects.filter(pk=alpaca_app.pk).update(enabled=False)
    assert broker_app_for("alpaca") is None


def test_catalog_marks_unconfigured_brokers(alpaca_app):
    BrokerApp.objects.create(broker_slug="schwab", environment="live", client_id="no-secret-yet")
    entries = {entry.slug: entry for entry in broker_catalog()}
    assert entries["alpaca"].configured is True and entries["alpaca"].admin_hint == ""
    assert entries["tradier"].configured is False
    hint = "Ask an administrator to add Tradier client credentials in Admin › Broker apps"
    assert entries["tradier"].admin_hint == hint
    assert entries["schwab"].configured is False
    assert "client secret" in entries["schwab"].admin_hint
    assert "sandbox" in entries


def test_catalog_leaves_out_the_sandbox_when_it_is_disabled(settings):
    settings.SANDBOX_ENABLED = False
    assert "sandbox" not in {entry.slug for entry in broker_catalog()}


def test_catalog_lists_connectable_brokers_first(alpaca_app):
    slugs = [entry.slug for entry in broker_catalog()]
    assert slugs[0] == "alpaca"  # the only configured one here
    configured = [entry.configured for entry in broker_catalog()]
    assert configured == sorted(configured, reverse=True)


def test_questrade_needs_no_secret():
    BrokerApp.objects.create(broker_slug="questrade", environment="live", client_id="qt")
    assert {e.slug: e for e in broker_catalog()}["questrade"].configured is True


def test_config_problem_is_flagged_once_and_cleared(alpaca_app):
    assert broker_app_flag_config_problem(alpaca_app, "invalid_client: bad secret") is True
    first_at = alpaca_app.config_problem_at
    assert broker_app_flag_config_problem(alpaca_app, "invalid_client again") is False
    alpaca_app.refresh_from_db()
    assert alpaca_app.config_problem == "invalid_client: bad secret"
    assert alpaca_app.config_problem_at == first_at
    assert {e.slug: e for e in broker_catalog()}["alpaca"].configured is False
    broker_app_clear_config_problem(alpaca_app)
    alpaca_app.refresh_from_db()
    assert alpaca_app.config_problem == "" and alpaca_app.config_problem_at is None


def test_admin_never_renders_the_secret(admin_client, alpaca_app):
    change = admin_client.get(reverse("admin:brokers_brokerapp_change", args=[alpaca_app.pk]))
    listing = admin_client.get(reverse("admin:brokers_brokerapp_changelist"))
    for response in (change, listing):
        html = response.content.decode()
        assert response.status_code == 200
        assert SECRET not in html
        assert alpaca_app.client_secret_sealed not in html
        assert alpaca_app.client_secret_sealed[:24] not in html
    assert "set" in listing.content.decode()
    assert 'type="password"' in change.content.decode()


def test_admin_blank_secret_keeps_existing_and_new_secret_replaces(admin_client, alpaca_app):
    url = reverse("admin:brokers_brokerapp_change", args=[alpaca_app.pk])
    form = {"broker_slug": "alpaca", "environment": "paper", "client_id": "renamed", "redirect_uri": "",
            "enabled": "on", "new_client_secret": ""}
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    alpaca_app.refresh_from_db()
    assert alpaca_app.client_id == "renamed" and alpaca_app.client_secret == SECRET

    response = admin_client.post(url, {**form, "new_client_secret": "rotated-secret"})
    assert response.status_code == 302
    alpaca_app.refresh_from_db()
    assert alpaca_app.client_secret == "rotated-secret"


def test_admin_adds_an_app_with_a_secret(admin_client):
    response = admin_client.post(
        reverse("admin:brokers_brokerapp_add"),
        {"broker_slug": "coinbase", "environment": "live", "client_id": "cb", "redirect_uri": "",
         "enabled": "on", "new_client_secret": "cb-secret"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    app = BrokerApp.objects.get(broker_slug="coinbase")
    assert app.client_secret == "cb-secret"
    assert "cb-secret" not in app.client_secret_sealed


def test_admin_rejects_an_environment_the_broker_lacks(admin_client):
    response = admin_client.post(
        reverse("admin:brokers_brokerapp_add"),
        {"broker_slug": "schwab", "environment": "paper", "client_id": "x", "enabled": "on"},
    )
    assert response.status_code == 200
    assert "Charles Schwab has no paper environment" in response.content.decode()


def test_redirect_uri_must_be_brokerlinks_own_callback(admin_client, settings):
    """Security finding 13: an admin cannot point a broker's codes at another site."""
    settings.SITE_URL = "https://brokerlink.example.com"
    form = {"broker_slug": "alpaca", "environment": "live", "client_id": "cid", "new_client_secret": "s" * 20,
            "enabled": "on"}
    evil = admin_client.post("/admin/brokers/brokerapp/add/", {**form, "redirect_uri": "https://evil.example/cb"})
    assert evil.status_code == 200 and not BrokerApp.objects.filter(broker_slug="alpaca").exists()
    assert "https://brokerlink.example.com/connections/callback/alpaca/" in evil.content.decode()
    good = {**form, "redirect_uri": "https://brokerlink.example.com/connections/callback/alpaca/"}
    assert admin_client.post("/admin/brokers/brokerapp/add/", good).status_code == 302


def test_extra_authorize_params_never_override_protocol_parameters(rf):
    """Security finding 13: a YAML broker's extra_authorize_params are merged before state/redirect_uri."""
    from dataclasses import replace
    from urllib.parse import parse_qs, urlsplit

    from django.contrib.sessions.backends.db import SessionStore

    from brokers.registry import get_profile
    from connections.oauth_flow import SESSION_KEY, flow_begin

    profile = replace(get_profile("alpaca"), extra_authorize_params={
        "state": "attacker", "redirect_uri": "https://evil.example/cb", "code_challenge_method": "plain",
        "prompt": "consent",
    })
    app = BrokerApp(broker_slug="alpaca", environment="live", client_id="cid")
    request = rf.get("/")
    request.session = SessionStore()
    params = {k: v[0] for k, v in parse_qs(urlsplit(flow_begin(request, profile=profile, app=app)).query).items()}
    assert params["state"] in request.session[SESSION_KEY] and params["state"] != "attacker"
    assert params["redirect_uri"] == app.effective_redirect_uri
    assert params.get("code_challenge_method") in (None, "S256") and params["prompt"] == "consent"
