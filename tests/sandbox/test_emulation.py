"""Broker emulation: a sandbox client takes on a real profile's TokenRules."""

import dataclasses
import json
from datetime import datetime, time, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from brokers.profile import ErrorShape, TokenRules
from brokers.registry import get_profile
from sandbox import services
from sandbox.models import SandboxClient

DAY = 86400

# TokenRules field -> how it shows on the client (client_describe keys).
FIELD_ON_CLIENT = {"token_auth_method": "token_endpoint_auth_method", "pkce": "require_pkce"}


@pytest.mark.django_db
def test_every_token_rules_field_is_mapped_onto_the_client():
    rules = TokenRules(
        access_ttl=1234,
        issues_refresh_token=True,
        refresh_ttl=5678,
        rotates_refresh_token=True,
        absolute_cap=9999,
        daily_expiry=time(3, 30),
        daily_expiry_tz="Asia/Kolkata",
        token_auth_method="client_secret_post",
        pkce=False,
        invalid_refresh=ErrorShape(418, {"oops": "refresh"}, "application/problem+json"),
        invalid_access=ErrorShape(403, "<h1>no</h1>", "text/html"),
    )
    client = services.client_create(name="x", redirect_uris=["http://127.0.0.1:9/cb"], token_rules=rules)
    described = services.client_describe(SandboxClient.objects.get(pk=client.pk))
    for field in dataclasses.fields(TokenRules):
        expected = getattr(rules, field.name)
        shown = described[FIELD_ON_CLIENT.get(field.name, field.name)]
        if isinstance(expected, ErrorShape):
            expected = dataclasses.asdict(expected)
        if isinstance(expected, time):
            expected = expected.strftime("%H:%M")
        assert shown == expected, field.name


@pytest.mark.django_db
@pytest.mark.parametrize("slug", ["alpaca", "schwab", "tradestation", "tradier", "questrade", "upstox"])
def test_emulate_copies_the_registry_profile(slug):
    client = services.client_create(name=slug, redirect_uris=["http://127.0.0.1:9/cb"], emulate=slug)
    rules = get_profile(slug).token_rules
    assert client.emulate == slug
    assert client.access_ttl == rules.access_ttl
    assert client.issues_refresh_token == rules.issues_refresh_token
    assert client.absolute_cap == rules.absolute_cap
    assert client.token_endpoint_auth_method == rules.token_auth_method
    assert services.error_shape(client, "refresh") == rules.invalid_refresh


@pytest.mark.django_db
def test_unknown_broker_is_refused():
    with pytest.raises(services.SandboxError):
        services.client_create(name="x", redirect_uris=["http://127.0.0.1:9/cb"], emulate="no-such-broker")


@pytest.mark.django_db
def test_sandbox_client_command_prints_json():
    out = StringIO()
    call_command(
        "sandbox_client", "create", "--name", "Demo", "--redirect-uri", "http://127.0.0.1:8000/cb",
        "--rotate-refresh", "--emulate", "schwab", stdout=out,
    )  # fmt: skip
    data = json.loads(out.getvalue())
    assert data["client_id"].startswith("sbx_")
    assert data["client_secret"]
    assert data["emulate"] == "schwab"
    assert data["rotates_refresh_token"] is True
    assert data["token_endpoint_auth_method"] == "client_secret_basic"


def test_schwab_absolute_cap_answers_unsupported_token_type(sandbox_server, make_flow):
    # Rotation on, so each refresh would extend a plain refresh TTL: only the cap from the
    # first consent can end it.
    flow = make_flow(emulate="schwab", rotate_refresh=True)
    cid = flow.client["client_id"]
    assert flow.client["token_endpoint_auth_method"] == "client_secret_basic"
    tokens = flow.connect()
    assert tokens["expires_in"] == 1800

    sandbox_server.set_faults(cid, clock_offset_seconds=6 * DAY)
    refreshed = flow.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text

    sandbox_server.set_faults(cid, clock_offset_seconds=8 * DAY)
    dead = flow.refresh(refreshed.json()["refresh_token"])
    assert dead.status_code == 400
    assert dead.json()["error"] == "unsupported_token_type"
    assert "refresh_token_authentication_error" in dead.json()["error_description"]


def test_alpaca_issues_no_refresh_token_and_no_expiry(sandbox_server, make_flow):
    flow = make_flow(emulate="alpaca")
    assert flow.client["token_endpoint_auth_method"] == "client_secret_post"
    tokens = flow.connect()
    assert "refresh_token" not in tokens
    assert "expires_in" not in tokens
    assert flow.account(tokens["access_token"]).status_code == 200
    sandbox_server.revoke_all(flow.client["client_id"])
    dead = flow.account(tokens["access_token"])
    assert dead.status_code == 401
    assert dead.json() == {"code": 40110000, "message": "access key verification failed"}


def test_daily_expiry_at_wall_clock_time(sandbox_server, make_flow):
    flow = make_flow(access_ttl=None, daily_expiry="03:30", daily_expiry_tz="Asia/Kolkata")
    tokens = flow.connect()
    now = datetime.now(ZoneInfo("Asia/Kolkata"))
    boundary = now.replace(hour=3, minute=30, second=0, microsecond=0)
    if boundary <= now:
        boundary += timedelta(days=1)
    assert abs(tokens["expires_in"] - (boundary - now).total_seconds()) < 10
    flow_id = flow.client["client_id"]
    sandbox_server.set_faults(flow_id, clock_offset_seconds=tokens["expires_in"] - 30)
    assert flow.account(tokens["access_token"]).status_code == 200
    sandbox_server.set_faults(flow_id, clock_offset_seconds=tokens["expires_in"] + 30)
    assert flow.account(tokens["access_token"]).status_code == 401


def test_next_wall_clock_crosses_midnight_in_the_zone():
    utc = ZoneInfo("UTC")
    now = datetime(2025, 3, 1, 23, 0, tzinfo=utc)  # 04:30 in Kolkata: 03:30 has passed today
    at = services.next_wall_clock(now, time(3, 30), "Asia/Kolkata")
    assert at == datetime(2025, 3, 2, 22, 0, tzinfo=utc)
