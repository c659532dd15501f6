"""The minimal examples in docs/brokers.md load as written (the OIDC one against a local
discovery document standing in for its host)."""

import re
from pathlib import Path

import pytest

from brokers.custom import read_brokers_file

DOC = Path(__file__).resolve().parents[2] / "docs" / "brokers.md"


def example(name: str) -> str:
    blocks = re.findall(r"```yaml\n(# example: [\w-]+\n.*?)```", DOC.read_text(), flags=re.S)
    found = {block.splitlines()[0].split(": ", 1)[1]: block for block in blocks}
    return found[name]


@pytest.mark.django_db
def test_minimal_oidc_example(tmp_path, settings, metadata_server):
    root, documents = metadata_server
    documents["/.well-known/openid-configuration"] = {
        "issuer": root,
        "authorization_endpoint": f"{root}/authorize",
        "token_endpoint": f"{root}/token",
        "revocation_endpoint": f"{root}/revoke",
        "userinfo_endpoint": f"{root}/userinfo",
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }
    text = example("minimal-oidc").replace("https://id.northwind.example", root)
    path = tmp_path / "brokers.yaml"
    path.write_text(text)
    settings.BROKERS_FILE = str(path)
    result = read_brokers_file(use_cache=False)
    assert (result.errors, result.warnings) == ([], [])
    [profile] = result.profiles
    assert profile.token_url == f"{root}/token" and profile.revoke_url == f"{root}/revoke"
    assert profile.api_base_urls == {"live": root} and profile.heartbeat_path == "/userinfo"
    assert profile.require_iss is False
    assert profile.parse_identity({"sub": "alice"})["account_id"] == "alice"


def test_minimal_oauth2_example(tmp_path, settings):
    path = tmp_path / "brokers.yaml"
    path.write_text(example("minimal-oauth2"))
    settings.BROKERS_FILE = str(path)
    result = read_brokers_file(use_cache=False)
    assert (result.errors, result.warnings) == ([], [])
    [profile] = result.profiles
    assert (profile.slug, profile.name, profile.scopes) == ("acme", "Acme Securities", ("read",))
    assert profile.can_revoke_single_user
