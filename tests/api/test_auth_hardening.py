"""Issue 24, low findings on the API: failed authentication is audited and limited per
address, a revoked key's use alerts the operators, the client address behind proxies comes
from one documented setting, limits hold while Redis is down, and the proxy's path check
refuses encoded dot segments at any depth."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from django.utils import timezone

from api.models import ApiAuditEntry, Scope
from api.services import service_key_create, service_key_revoke
from connections.models import Connection
from engine.services import broker_path_problem, connection_api_url, url_within_base

pytestmark = pytest.mark.django_db

DEAD_REDIS = {"default": {"BACKEND": "ops.cache.TolerantRedisCache", "LOCATION": "redis://127.0.0.1:1/0",
                          "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}}}


@pytest.fixture(autouse=True)
def fresh_limits():
    cache.clear()
    yield
    cache.clear()


def a_key(**fields):
    fields.setdefault("all_users", True)
    return service_key_create(name=fields.pop("name", "svc"), scopes=fields.pop("scopes", [Scope.READ_STATUS]),
                              **fields)


def get(client, key: str | None, *, address="198.51.100.20", scheme="Bearer", **extra):
    headers = {"HTTP_AUTHORIZATION": f"{scheme} {key}"} if key is not None else {}
    return client.get("/api/v1/connections", REMOTE_ADDR=address, **headers, **extra)


def test_every_failed_authentication_is_audited_with_prefix_and_address(client):
    key, plaintext = a_key()
    _, expired = a_key(name="old", expires_at=timezone.now() - timedelta(seconds=1))
    revoked, revoked_plain = a_key(name="gone")
    service_key_revoke(revoked)
    wrong = plaintext[:-2] + ("AA" if not plaintext.endswith("AA") else "BB")
    attempts = [("blk_0000deadbeef_secret", "Bearer"), (wrong, "Bearer"), (expired, "Bearer"),
                (revoked_plain, "Bearer"), (plaintext, "Basic")]
    for raw, scheme in attempts:
        assert get(client, raw, scheme=scheme).status_code == 401
    rows = list(ApiAuditEntry.objects.filter(action="auth_failed").order_by("id"))
    assert [r.result.split(";")[0] for r in rows] == [
        "Refused: unknown", "Refused: wrong secret", "Refused: expired", "Refused: revoked", "Refused: no bearer key"]
    assert "0000deadbeef" in rows[0].result and key.prefix in rows[1].result
    assert all(r.remote_addr == "198.51.100.20" and r.status_code == 401 for r in rows)
    secret = plaintext.split("_", 2)[2]
    assert not any(secret in r.result or secret[:-2] in r.result for r in rows)


def test_a_revoked_key_used_with_its_secret_alerts_the_operators_once(client, settings):
    settings.ADMINS = [("Ops", "ops-team@example.com")]
    key, plaintext = a_key(name="leaked")
    service_key_revoke(key)
    mail.outbox.clear()  # the creation's own alert
    for _ in range(3):
        assert get(client, plaintext).status_code == 401
    (alert,) = mail.outbox
    assert "Revoked service key leaked" in alert.subject and "198.51.100.20" in alert.body
    assert plaintext.split("_", 2)[2] not in alert.body


def test_too_many_401s_from_one_address_get_429_even_with_a_good_key(client, settings):
    settings.API_AUTH_FAILURES_PER_MINUTE = 3
    _, good = a_key()
    for _ in range(3):
        assert get(client, "blk_guess_guess").status_code == 401
    assert get(client, "blk_guess_guess").status_code == 429
    assert get(client, good).status_code == 429  # the address is paused, whatever it sends
    assert get(client, good, address="198.51.100.99").status_code == 200  # another address is not


def test_the_client_address_comes_from_the_trusted_hop_count(client, settings):
    forwarded = {"HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.5"}  # the client wrote 6.6.6.6 itself
    get(client, "blk_x_y", address="10.0.0.1", **forwarded)
    settings.TRUSTED_PROXY_HOPS = 1
    get(client, "blk_x_y", address="10.0.0.1", **forwarded)
    settings.TRUSTED_PROXY_HOPS = 2  # two proxies: the one before the last saw 6.6.6.6
    get(client, "blk_x_y", address="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5, 10.0.0.9")
    assert list(ApiAuditEntry.objects.order_by("id").values_list("remote_addr", flat=True)) == [
        "10.0.0.1", "203.0.113.5", "203.0.113.5"]


def test_a_keys_rate_limit_holds_while_redis_is_down(client, settings):
    settings.CACHES = DEAD_REDIS
    _, plaintext = a_key(rate_limit_per_minute=2)
    assert [get(client, plaintext).status_code for _ in range(3)] == [200, 200, 429]


def test_check_now_cooldown_holds_while_redis_is_down(settings, user):
    from engine.services import check_now_allowed

    settings.CACHES = DEAD_REDIS
    settings.CHECK_NOW_COOLDOWN_SECONDS = 60
    connection = Connection.objects.create(user=user, broker_slug="sandbox", account_id="1")
    assert check_now_allowed(connection) is True
    assert check_now_allowed(connection) is False


@pytest.mark.parametrize("path", [
    "%2e%2e/admin", "%252e%252e/admin", "%25252e%25252e/admin", "v1/%2E%2E/%2E%2E/x", "v1%2fadmin",
    "v1%252f..%252fadmin", "v1/%5c..", "..", "v1/../../admin", "./x", "//evil.example/x", "https://evil.example/",
    "v1/\\..\\admin", "v1/\x00",
])
def test_the_proxy_refuses_dot_segments_and_separators_encoded_at_any_depth(path, user):
    assert broker_path_problem(path)
    connection = Connection.objects.create(user=user, broker_slug="sandbox", account_id="1")
    with pytest.raises(ValueError):
        connection_api_url(connection, path)


def test_ordinary_broker_paths_still_pass(user):
    connection = Connection.objects.create(user=user, broker_slug="sandbox", account_id="1")
    for path in ["v1/accounts", "v1/quotes?symbol=BRK.B", "v1/orders/abc-123", "v1/search%20term"]:
        assert broker_path_problem(path) is None
        url = connection_api_url(connection, path)
        assert url.endswith(path)


def test_the_built_url_must_stay_under_the_base():
    base = "https://api.broker.example:8443/v2"
    assert url_within_base("https://api.broker.example:8443/v2/accounts", base)
    assert not url_within_base("https://api.broker.example:8443/v2x/accounts", base)
    assert not url_within_base("https://api.broker.example/v2/accounts", base)
    assert not url_within_base("http://api.broker.example:8443/v2/accounts", base)
    assert not url_within_base("https://other.example:8443/v2/accounts", base)
