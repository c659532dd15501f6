"""Identity shapes, OIDC-aware authorize parameters, `iss` rules, PKCE, per-broker tuning,
Questrade's api_server, text log fields, and discovery outages (warnings, stored metadata)."""

import logging
import subprocess

import pytest

from brokers.checks import check_broker_profiles
from brokers.custom import BrokerSpecError, profile_from_spec, read_brokers_file, resolve_spec
from brokers.identity import IdentityError, IdentitySpec, identity_from_payload
from brokers.models import CustomBroker, DiscoveredMetadata
from brokers.profile import BrokerProfile, TokenAnswerRejected, TokenRules
from brokers.profiles import questrade
from brokers.registry import get_profile
from connections.oauth_flow import FlowError, authorize_params, flow_uses_pkce, issuer_check
from tests.support import PYTHON, subprocess_env


def profile(**fields) -> BrokerProfile:
    base = dict(
        slug="acme", name="Acme", authorize_url="https://auth.acme.example/authorize",
        token_url="https://auth.acme.example/token", api_base_urls={"live": "https://api.acme.example"},
        heartbeat_path="/me", token_rules=TokenRules(),
    )
    return BrokerProfile(**{**base, **fields})


@pytest.mark.parametrize(
    ("payload", "account_id", "masked", "label"),
    [
        ({"sub": "alice"}, "alice", "", ""),
        ({"id": "u-1", "name": "Ada"}, "u-1", "", "Ada"),
        ({"account_id": "A-77", "nickname": "Main"}, "A-77", "", "Main"),
        ({"account_number": "12345678"}, "12345678", "••5678", ""),
        ({"accounts": [{"accountNumber": "99990001"}, {"accountNumber": "2"}]}, "99990001", "••0001", ""),
        ([{"id": "first"}, {"id": "second"}], "first", "", ""),
        ({"data": {"id": "wrapped"}}, "wrapped", "", ""),
    ],
)
def test_identity_from_the_usual_shapes(payload, account_id, masked, label):
    identity = identity_from_payload(payload)
    assert (identity["account_id"], identity["masked_number"], identity["label"]) == (account_id, masked, label)


def test_identity_from_a_declared_pointer_or_dotted_path():
    payload = {"result": {"clients": [{"key": "C-1", "title": "Joint", "no": "0011223344"}]}}
    spec = IdentitySpec(id="/result/clients/0/key", label="/result/clients/0/title", number="/result/clients/0/no")
    by_pointer = identity_from_payload(payload, spec)
    assert by_pointer == {"account_id": "C-1", "masked_number": "••3344", "label": "Joint", "paper": False}
    assert identity_from_payload(payload, IdentitySpec(id="result.clients.0.key"))["account_id"] == "C-1"
    with pytest.raises(IdentityError, match="no value at 'result.nope'"):
        identity_from_payload(payload, IdentitySpec(id="result.nope"))


def test_json_without_an_id_says_what_was_looked_for():
    with pytest.raises(IdentityError) as info:
        identity_from_payload({"email": "a@b.example", "verified": True})
    message = str(info.value)
    assert "a JSON object with fields email, verified" in message
    assert "sub" in message and "identity setting" in message


def test_openid_with_offline_access_sends_prompt_consent():
    oidc = profile(scopes=("openid", "offline_access", "accounts:read"))
    assert authorize_params(oidc) == {"scope": "openid offline_access accounts:read", "prompt": "consent"}
    assert "prompt" not in authorize_params(profile(scopes=("wallet:accounts:read", "offline_access")))


def test_pkce_always_unless_a_documented_opt_out():
    assert flow_uses_pkce(profile(token_rules=TokenRules(pkce=False)))
    assert not flow_uses_pkce(profile(pkce_opt_out="https://broker.example/docs/pkce-unsupported"))
    public = profile(pkce_opt_out="x", token_rules=TokenRules(token_auth_method="none"))
    assert flow_uses_pkce(public)


def test_iss_is_required_only_when_advertised_or_declared():
    plain = profile()
    issuer_check(plain, None)  # no iss, none advertised: fine
    issuer_check(plain, "https://auth.acme.example")  # same origin
    with pytest.raises(FlowError, match="issuer_mismatch"):
        issuer_check(plain, "https://evil.example")
    strict = profile(issuer="https://auth.acme.example", require_iss=True)
    with pytest.raises(FlowError, match="issuer_missing"):
        issuer_check(strict, None)
    with pytest.raises(FlowError, match="issuer_mismatch"):
        issuer_check(strict, "https://auth.acme.example/other")
    issuer_check(profile(issuer="https://auth.acme.example"), None)


def test_refresh_margin_defaults_to_a_third_of_the_lifetime_capped():
    assert profile().refresh_margin(60) == 20
    assert profile().refresh_margin(1800) == 300
    assert profile(token_rules=TokenRules(access_ttl=90)).refresh_margin(None) == 30
    assert profile(refresh_margin_seconds=45).refresh_margin(60) == 45


def test_builtin_profiles_ask_for_read_only_scopes():
    writes = {"trade", "trading", "Trade", "write", "account:write", "stream", "MarketData"}
    for slug in ("alpaca", "tradier", "tradestation", "tastytrade", "coinbase", "sandbox"):
        assert not writes & set(get_profile(slug).scopes), slug


@pytest.mark.parametrize(
    ("server", "ok"),
    [
        ("https://api05.iq.questrade.com/", True),
        ("https://api01.iq.questrade.com", True),
        ("http://api05.iq.questrade.com/", False),
        ("https://api05.iq.questrade.com.evil.example/", False),
        ("https://evil.example/", False),
        ("https://api05.iq.questrade.com/../x", False),
    ],
)
def test_questrade_api_server_only_on_its_documented_host_pattern(server, ok):
    hooks = questrade.PROFILE.hooks
    if ok:
        assert hooks.token_meta({"api_server": server})["api_server"] == server.rstrip("/")
    else:
        with pytest.raises(TokenAnswerRejected, match="not https://apiNN.iq.questrade.com/"):
            hooks.token_meta({"api_server": server})


def test_yaml_tuning_and_identity_reach_the_profile():
    spec = resolve_spec("acme", {
        "authorize_url": "https://auth.acme.example/a", "token_url": "https://auth.acme.example/t",
        "api_base_url": "https://api.acme.example", "heartbeat_path": "/me",
        "identity": {"id": "/data/id", "label": "data.name"},
        "refresh_margin_seconds": 30, "heartbeat_interval_seconds": 120, "refresh_deadline_seconds": 40,
        "backoff": {"kind": "linear", "base_seconds": 10, "cap_seconds": 600, "max_attempts": 4},
        "circuit": {"failure_threshold": 3, "cooldown_seconds": 90},
    })
    built = profile_from_spec("acme", spec)
    assert built.identity == IdentitySpec(id="/data/id", label="data.name")
    assert (built.refresh_margin_seconds, built.heartbeat_interval_seconds, built.refresh_deadline_seconds) == (
        30, 120, 40)
    assert (built.backoff.kind, built.backoff.base_seconds, built.backoff.cap_seconds, built.backoff.max_attempts) == (
        "linear", 10, 600, 4)
    assert (built.circuit.failure_threshold, built.circuit.cooldown_seconds) == (3, 90)
    assert built.parse_identity({"data": {"id": 7, "name": "Main"}})["account_id"] == "7"


def test_yaml_tuning_errors_name_the_field():
    with pytest.raises(BrokerSpecError) as info:
        resolve_spec("acme", {
            "authorize_url": "https://a.example/a", "token_url": "https://a.example/t", "api_base_url": "https://a.example",
            "backoff": {"kind": "random", "base_seconds": 0}, "circuit": {"cooldown": 5},
            "identity": {"label": "x"}, "heartbeat_interval_seconds": 5,
        })
    fields = {field for field, _ in info.value.problems}
    assert {"backoff.kind", "backoff.base_seconds", "circuit.cooldown", "identity.id",
            "heartbeat_interval_seconds"} <= fields


@pytest.mark.django_db
def test_admin_broker_tuning_and_identity(metadata_server, client, django_user_model):
    from tests.brokers.test_custom import _custom_broker_form

    root, _ = metadata_server
    client.force_login(django_user_model.objects.create_superuser(email="root@example.com", password="pw-123456789"))
    response = client.post("/admin/brokers/custombroker/add/", _custom_broker_form(
        slug="tuned", name="Tuned", discovery_url=f"{root}/.well-known/oauth-authorization-server",
        heartbeat_path="/v1/account", identity_id="/user/id", refresh_margin_seconds="20", backoff_kind="fixed",
        backoff_base_seconds="15", circuit_failure_threshold="2", require_iss="unknown",
    ))
    assert response.status_code == 302, response.content.decode()[:3000]
    row = CustomBroker.objects.get(slug="tuned")
    assert row.api_base_url == root  # from the discovered issuer
    assert row.require_iss is False  # the metadata does not advertise iss
    built = get_profile("tuned")
    assert built.identity == IdentitySpec(id="/user/id")
    assert (built.refresh_margin_seconds, built.backoff.kind, built.backoff.base_seconds) == (20, "fixed", 15)
    assert built.circuit.failure_threshold == 2


def test_text_log_lines_carry_the_structured_fields():
    import io

    from ops.logging import ContextFilter, RedactSecretsFilter, TextFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(TextFormatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("brokerlink.fields")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.info("connections.broker.call", extra={
            "broker": "alpaca", "status": 503, "latency_ms": 812, "ok": False, "error": "two words",
            "refresh_token": "rt-should-not-appear",
        })
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    line = stream.getvalue().strip()
    assert line.startswith("INFO brokerlink.fields connections.broker.call broker=alpaca status=503 latency_ms=812")
    assert 'ok=False error="two words"' in line
    assert "rt-should-not-appear" not in line and "refresh_token=[redacted]" in line


DOWN_YAML = """
brokers:
  northwind:
    discovery_url: {url}
    heartbeat_path: /oidc/userinfo
    scopes: [openid, offline_access]
"""


@pytest.mark.django_db
def test_discovery_outage_is_a_warning_and_stored_metadata_is_used(tmp_path, settings, metadata_server):
    root, documents = metadata_server
    url = f"{root}/.well-known/oauth-authorization-server"
    path = tmp_path / "brokers.yaml"
    path.write_text(DOWN_YAML.format(url=url))
    settings.BROKERS_FILE = str(path)
    assert [p.slug for p in read_brokers_file(use_cache=False).profiles] == ["northwind"]
    assert DiscoveredMetadata.objects.get(url=url).metadata["issuer"] == root

    documents.clear()  # the discovery URL now answers 404
    result = read_brokers_file(use_cache=False)
    assert result.errors == []
    assert [p.slug for p in result.profiles] == ["northwind"]  # from the stored copy
    assert result.profiles[0].token_url == f"{root}/oauth/token"
    assert "using the metadata stored" in result.warnings[0]
    messages = check_broker_profiles()
    assert [m.id for m in messages] == ["brokers.W001"]
    assert DiscoveredMetadata.objects.get(url=url).last_error == "metadata answered HTTP 404"

    DiscoveredMetadata.objects.all().delete()  # never fetched: left out, still a warning
    result = read_brokers_file(use_cache=False)
    assert result.profiles == [] and result.errors == []
    assert "retried in the background" in result.warnings[0]
    assert result.retry_at is not None


def test_migrate_succeeds_with_the_discovery_url_unreachable(tmp_path):
    from tests.support import free_port

    path = tmp_path / "brokers.yaml"
    url = f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration"
    path.write_text(DOWN_YAML.format(url=url))
    env = subprocess_env(BROKERS_FILE=str(path), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    done = subprocess.run(
        [PYTHON, "manage.py", "migrate", "--no-input"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "brokers.W001" in done.stderr
    assert 'broker "northwind": discovery_url' in done.stderr


@pytest.mark.django_db
def test_admin_form_offers_identity_and_tuning(client, django_user_model):
    admin = django_user_model.objects.create_superuser(email="root@example.com", password="pw-123456789")
    client.force_login(admin)
    page = client.get("/admin/brokers/custombroker/add/")
    assert page.status_code == 200
    for name in ("identity_id", "refresh_margin_seconds", "refresh_deadline_seconds", "heartbeat_interval_seconds",
                 "backoff_kind", "circuit_failure_threshold", "require_iss", "pkce_opt_out"):
        assert f'name="{name}"' in page.content.decode()
    assert client.get("/admin/brokers/discoveredmetadata/").status_code == 200
