"""The connect-session examples in docs/integrating.md, read from the file and run as written
against a real server (the Python one as a partner backend would, with requests)."""

from __future__ import annotations

import json
import os
import re
import subprocess

from api.models import Scope
from api.services import service_key_create
from connections.models import Connection, ConnectionStatus
from partners.models import ConnectSession, EndUser
from partners.services import partner_app_create
from tests.support import ROOT

DOC = ROOT / "docs" / "integrating.md"
RETURN = "https://tracker.example/brokerlink/done"


def code_block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, f"expected one {language} block in {DOC.name}, found {len(blocks)}"
    return blocks[0]


def partner_key(stack) -> str:
    stack.broker_app("sandbox", rotate_refresh=True)
    app = partner_app_create(name="Tracker", return_urls=[RETURN])
    _key, plaintext = service_key_create(
        name="tracker", scopes=[Scope.CONNECT_SESSIONS, Scope.MANAGE_END_USERS], app=app
    )
    return plaintext


def test_the_curl_example_creates_a_session(stack):
    env = {**os.environ, "BROKERLINK_KEY": partner_key(stack), "BROKERLINK_URL": stack.url}
    done = subprocess.run(["bash", "-c", code_block("bash")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    session = json.loads(done.stdout)
    assert session["url"].startswith(f"{stack.url}/connect/s/") and session["end_user_id"] == "u-42"
    row = ConnectSession.objects.get(pk=session["id"])
    assert row.brokers == ["sandbox"] and row.return_url == RETURN and row.end_user.email == "ada@example.com"


def test_the_python_example_links_and_offboards(stack):
    namespace = {"BROKERLINK_URL": stack.url, "BROKERLINK_KEY": partner_key(stack), "RETURN_URL": RETURN}
    exec(compile(code_block("py"), str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    url = namespace["connect_link"]("u-7", "bo@example.com")
    assert url.startswith(f"{stack.url}/connect/s/")
    end_user = EndUser.objects.get(external_id="u-7")
    Connection.objects.create(
        end_user=end_user, broker_slug="sandbox", account_id="a", status=ConnectionStatus.CONNECTED
    )
    namespace["offboard"]("u-7")
    assert not EndUser.objects.filter(external_id="u-7").exists()
    assert not Connection.objects.filter(account_id="a").exists()
