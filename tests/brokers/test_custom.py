
import pytest
from django.urls import reverse

from brokers.checks import check_broker_profiles
from brokers.custom import BrokerSpecError, read_brokers_file, resolve_spec
from brokers.models import CustomBroker
from brokers.registry import get_profile

GOOD_YAML = """
brokers:
  acme:
    name: Acme Securities
    authorize_url: https://auth.acme.example/oauth/authorize
    token_url: https://auth.acme.example/oauth/token
    revoke_url: https://auth.acme.example/oauth/revoke
    api_base_url: https://api.acme.example
    heartbeat_path: /v1/me
    scopes: [read, trade]
    token_auth_method: client_secret_post
    pkce: true
    rotates_refresh_token: true
    access_ttl: 900
    refresh_ttl: 2592000
"""

BROKEN_YAML = """
brokers:
  acme:
    name: Acme Securities
    authorize_url: https://auth.acme.example/oauth/authorize
    token_url: http://auth.acme.example/oauth/token
    api_base_url: https://api.acme.example
"""


@pytest.fixture
def brokers_file(tmp_path, settings):
    def write(text: str):
        path = tmp_path / "brokers.yaml"
        path.write_text(text)
        settings.BROKERS_FILE = str(path)
        return path

    return write


@pytest.mark.django_db
def test_yaml_custom_broker_loads_and_is_in_the_registry(brokers_file):
    brokers_file(GOOD_YAML)
    result = read_brokers_file()
    assert result.errors == []
    profile = get_profile("acme")
    assert profile.is_custom and profile.name == "Acme Securities"
    assert profile.token_url == "https://auth.acme.example/oauth/token"
    assert profile.scopes == ("read", "trade")
    assert profile.revocation_scope == "token" and profile.can_revoke_single_user
    assert profile.token_rules.token_auth_method == "client_secret_post"
    assert profile.token_rules.rotates_refresh_token is True
    assert profile.token_rules.access_ttl == 900
    assert check_broker_profiles() == []


def test_broken_yaml_broker_error_names_file_broker_and_field(brokers_file):
    path = brokers_file(BROKEN_YAML)
    result = read_brokers_file()
    assert result.profiles == []
    assert result.errors == [
        f'BROKERS_FILE {path}: broker "acme": token_url: must be an https:// URL '
        "(http allowed only for 127.0.0.1/localhost)"
    ]
    errors = check_broker_profiles()
    assert [e.id for e in errors] == ["brokers.E002"]
    assert 'broker "acme": token_url:' in errors[0].msg


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"token_url": "https://a.example/t", "api_base_url": "https://a.example"}, "authorize_url"),
        ({"authorize_url": "https://a.example/a", "token_url": "https://a.example/t"}, "api_base_url"),
        (
            {"authorize_url": "https://a.example/a", "token_url": "https://a.example/t",
             "api_base_url": "https://a.example", "token_auth_method": "private_key_jwt"},
            "token_auth_method",
        ),
        (
            {"authorize_url": "https://a.example/a", "token_url": "https://a.example/t",
             "api_base_url": "https://a.example", "access_ttl": -5},
            "access_ttl",
        ),
        (
            {"authorize_url": "https://a.example/a", "token_url": "https://a.example/t",
             "api_base_url": "https://a.example", "tokne_url": "typo"},
            "tokne_url",
        ),
    ],
)
def test_spec_errors_name_the_field(spec, field):
    with pytest.raises(BrokerSpecError) as info:
        resolve_spec("acme", spec, origin="BROKERS_FILE x.yaml", discover=False)
    assert any(message.startswith(f'BROKERS_FILE x.yaml: broker "acme": {field}:') for message in info.value.messages())


def test_custom_broker_cannot_shadow_a_builtin(brokers_file):
    brokers_file(GOOD_YAML.replace("acme:", "alpaca:"))
    assert read_brokers_file().errors[0].endswith('broker "alpaca": slug: is a built-in broker; choose another slug')


def test_invalid_yaml_is_reported(brokers_file):
    brokers_file("brokers: [unclosed")
    assert "not valid YAML" in read_brokers_file().errors[0]


@pytest.mark.django_db
def test_discovery_fills_missing_endpoints(brokers_file, metadata_server):
    root, _ = metadata_server
    brokers_file(
        f"""
brokers:
  discovered:
    name: Discovered Broker
    discovery_url: {root}/.well-known/oauth-authorization-server
    api_base_url: {root}
    heartbeat_path: /v1/account
"""
    )
    result = read_brokers_file(use_cache=False)
    assert result.errors == []
    profile = get_profile("discovered")
    assert profile.authorize_url == f"{root}/oauth/authorize"
    assert profile.token_url == f"{root}/oauth/token"
    assert profile.revoke_url == f"{root}/oauth/revoke"
    assert profile.issuer == root
    assert profile.token_rules.pkce is True
    assert profile.token_rules.token_auth_method == "client_secret_post"


@pytest.mark.django_db
def test_discovery_rejects_a_foreign_issuer(metadata_server):
    root, documents = metadata_server
    documents["/evil"] = {"issuer": "https://evil.example", "token_endpoint": "https://evil.example/t"}
    with pytest.raises(BrokerSpecError) as info:
        resolve_spec("x", {"discovery_url": f"{root}/evil", "api_base_url": root})
    assert info.value.problems[0][0] == "discovery_url"
    assert "issuer" in info.value.problems[0][1]


@pytest.mark.django_db
def test_discovery_failure_names_the_field(metadata_server):
    root, _ = metadata_server
    with pytest.raises(BrokerSpecError) as info:
        resolve_spec("x", {"discovery_url": f"{root}/missing", "api_base_url": root})
    assert info.value.problems == [("discovery_url", "metadata answered HTTP 404 (retried in the background)")]
    assert info.value.discovery_failed


def _custom_broker_form(**fields) -> dict:
    """The admin's add form as a browser posts it (unchecked boxes are left out)."""
    form = {
        "slug": "", "name": "", "enabled": "on", "discovery_url": "", "authorize_url": "", "token_url": "",
        "revoke_url": "", "revocation_scope": "token", "manual_revoke_url": "", "issuer": "", "api_base_url": "",
        "paper_api_base_url": "", "heartbeat_path": "/", "scopes": "", "scope_separator": " ",
        "token_auth_method": "client_secret_basic", "pkce": "on", "issues_refresh_token": "on",
        "access_ttl": "", "refresh_ttl": "", "absolute_cap": "",
    }
    form.update(fields)
    return form


@pytest.mark.django_db
def test_admin_custom_broker_validates_and_discovers_on_save(metadata_server, admin_client):
    root, _ = metadata_server
    add = reverse("admin:brokers_custombroker_add")
    response = admin_client.post(add, _custom_broker_form(
        slug="adminco", name="Admin Co", discovery_url=f"{root}/.well-known/oauth-authorization-server",
        api_base_url=root, heartbeat_path="/v1/account",
    ))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert CustomBroker.objects.get(slug="adminco").token_url == f"{root}/oauth/token"
    assert get_profile("adminco").authorize_url == f"{root}/oauth/authorize"

    page = admin_client.post(add, _custom_broker_form(
        slug="badco", name="Bad", authorize_url="https://a.example/a", token_url="http://a.example/t",
        api_base_url="https://a.example",
    ))
    assert page.status_code == 200 and not CustomBroker.objects.filter(slug="badco").exists()
    errors = page.context["adminform"].form.errors
    assert "token_url" in errors and "https://" in errors["token_url"][0]


def test_documented_example_file_is_valid(settings):
    from pathlib import Path

    settings.BROKERS_FILE = str(Path(__file__).resolve().parents[2] / "docs" / "brokers.example.yaml")
    result = read_brokers_file(use_cache=False)
    assert result.errors == []
    assert [p.slug for p in result.profiles] == ["acme"]
    assert result.profiles[0].api_base_urls["paper"] == "https://paper-api.acme.example"
