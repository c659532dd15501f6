"""The examples in docs/integrating.md, read from the file and run as they are written."""

from __future__ import annotations

import json
import os
import re
import subprocess

from api.models import ApiAuditEntry, Scope
from tests.api.conftest import expire_at_the_broker
from tests.support import ROOT

DOC = ROOT / "docs" / "integrating.md"


def code_block(language: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, f"expected one {language} block in {DOC.name}, found {len(blocks)}"
    return blocks[0]


def test_the_python_example_runs(connection, stack, sandbox_app, settings):
    settings.SANDBOX_BASE_URL = stack.sandbox.url  # this process calls the mounted sandbox too
    _, sandbox_client = sandbox_app
    source = code_block("python")
    assert len([line for line in source.splitlines() if line.strip()]) <= 10
    expire_at_the_broker(stack.sandbox, sandbox_client["client_id"])
    before = stack.sandbox.counters(sandbox_client["client_id"])
    stored = connection.access_token

    namespace = {"connection_id": connection.pk}
    exec(compile(source, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    account = namespace["account_before_order"](connection.pk)

    after = stack.sandbox.counters(sandbox_client["client_id"])
    assert account["account_number"].endswith(connection.account_number_masked[-4:])
    assert after["refreshes"] - before["refreshes"] == 1  # the 401 inside, handled
    assert namespace["token"] == stored  # read at the top level, before the call refreshed it


def test_the_curl_example_runs(connection, stack, api_client):
    client = api_client(scopes=[Scope.CALL])
    env = {**os.environ, "BROKERLINK_KEY": client.key, "BROKERLINK_URL": stack.url,
           "CONNECTION_ID": str(connection.pk)}
    done = subprocess.run(["bash", "-c", code_block("sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    account = json.loads(done.stdout)
    assert account["account_number"].endswith(connection.account_number_masked[-4:])
    assert ApiAuditEntry.objects.filter(key=client.service_key, action="proxy", status_code=200).count() == 1
