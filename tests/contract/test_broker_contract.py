"""The shared contract every real broker profile passes: connect, refresh, disconnect.

brokerlink runs its real code against the sandbox emulating each broker's token semantics
(`profile_for_sandbox_emulation`, switched on by settings.SANDBOX_EMULATE_BROKERS), with the
profile's client authentication, PKCE, refresh and revocation rules.
"""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings
from django.utils import timezone

from brokers.registry import BUILTIN_PROFILES, get_profile, profile_for_sandbox_emulation
from connections.errors import AUTH, BrokerError
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.tokens import next_daily_expiry
from engine.refresh import connection_refresh

REAL_BROKERS = ["alpaca", "schwab", "tradestation", "tradier", "questrade", "saxo", "coinbase", "tastytrade", "upstox"]


def test_every_real_profile_is_in_the_contract():
    assert sorted(REAL_BROKERS) == sorted(p.slug for p in BUILTIN_PROFILES)


@pytest.mark.parametrize("slug", REAL_BROKERS)
def test_broker_contract(slug, contract_browser, emulating, user):
    real = get_profile(slug)
    rules = real.token_rules
    app, client = emulating.broker_app(slug, environment="live", emulate=slug)
    assert client["token_endpoint_auth_method"] == rules.token_auth_method

    # --- connect ---
    started = timezone.now()
    page = contract_browser.connect(slug)
    assert page.status_code == 200, page.text[:800]
    assert "Connected" in page.text
    connection = Connection.objects.get(user=user, broker_slug=slug)
    assert connection.status == ConnectionStatus.CONNECTED
    assert connection.account_id
    assert connection.access_token

    # --- refresh (through the engine's refresh service, in this process) ---
    with override_settings(SANDBOX_EMULATE_BROKERS=["*"], SANDBOX_BASE_URL=emulating.sandbox.url):
        profile = profile_for_sandbox_emulation(slug)
        if rules.issues_refresh_token:
            assert connection.refresh_token
            old_access, old_refresh = connection.access_token, connection.refresh_token
            result = connection_refresh(connection.pk, reason="contract", force=True)
            assert result.refreshed
            after = Connection.objects.get(pk=connection.pk)
            assert after.access_token != old_access
            if rules.rotates_refresh_token:
                assert after.refresh_token != old_refresh
            else:
                assert after.refresh_token == old_refresh
            assert emulating.sandbox.counters(client["client_id"])["refreshes"] == 1
            if rules.absolute_cap:
                # Schwab: 7 days from first consent, never moved by a refresh.
                expected = after.grant_started_at + timedelta(seconds=rules.absolute_cap)
                assert after.reauth_deadline_at == expected
        else:
            assert connection.refresh_token_sealed == ""
            with pytest.raises(BrokerError) as excinfo:
                connection_refresh(connection.pk, reason="contract", force=True)
            assert excinfo.value.category == AUTH and excinfo.value.needs_reauth
            if rules.daily_expiry is not None:
                # Upstox: the token dies at the next 03:30 Asia/Kolkata; that is the re-auth deadline.
                expected = next_daily_expiry(rules, now=started)
                assert expected.astimezone(ZoneInfo(rules.daily_expiry_tz)).strftime("%H:%M") == "03:30"
                # expires_in is whole seconds counted by the broker a moment before brokerlink stored it.
                assert abs((connection.reauth_deadline_at - expected).total_seconds()) < 5
            elif rules.access_ttl is None:
                # Alpaca: tokens do not expire, so there is no deadline to warn about.
                assert connection.reauth_deadline_at is None
            assert emulating.sandbox.counters(client["client_id"])["refreshes"] == 0

    # --- disconnect ---
    page = contract_browser.disconnect(connection.pk)
    assert page.status_code == 200
    after = Connection.objects.get(pk=connection.pk)
    assert after.status == ConnectionStatus.DISCONNECTED
    assert after.access_token_sealed == "" and after.refresh_token_sealed == ""
    revocations = emulating.sandbox.counters(client["client_id"])["revocations"]
    if profile.can_revoke_single_user:
        assert f"Revoked at {real.name}" in page.text
        assert revocations == (2 if rules.issues_refresh_token else 1)
        assert after.events.filter(kind=ConnectionEvent.Kind.REVOKED).exists()
    else:
        assert revocations == 0, "brokerlink must not call this broker's revoke endpoint"
        assert "Not revoked:" in page.text
        assert real.manual_revoke_url in page.text
        assert after.events.filter(kind=ConnectionEvent.Kind.REVOCATION_FAILED).exists()
    if real.revocation_scope == "all_users_of_key":
        assert "signs out every brokerlink user" in page.text
