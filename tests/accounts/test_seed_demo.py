"""`manage.py seed_demo` (run by every `make run`): the demo logins and a Sandbox BrokerApp wired
to a sandbox client, through the sandbox's in-process surface (sandbox/api.py)."""

import pytest
from django.core.management import call_command

from brokers.models import BrokerApp
from sandbox.models import SandboxClient, SandboxUser

pytestmark = pytest.mark.django_db


def test_seed_demo_twice_keeps_one_client_and_repoints_its_redirect(monkeypatch, settings, capsys):
    monkeypatch.setenv("DEMO_PASSWORD", "a-demo-passphrase")
    settings.SITE_URL = "http://127.0.0.1:8000"
    call_command("seed_demo")
    out = capsys.readouterr().out
    app = BrokerApp.objects.get(broker_slug="sandbox", environment="paper")
    client = SandboxClient.objects.get(client_id=app.client_id)
    assert app.client_id in out and "demo  /  demo-broker-pass" in out
    assert client.redirect_uris == "http://127.0.0.1:8000/connections/callback/sandbox/"
    assert SandboxUser.objects.get(username="demo").accounts.count() == 2

    settings.SITE_URL = "http://127.0.0.1:8123"
    call_command("seed_demo")
    assert SandboxClient.objects.count() == 1
    assert BrokerApp.objects.get(pk=app.pk).client_id == client.client_id
    client.refresh_from_db()
    assert client.redirect_uris == "http://127.0.0.1:8123/connections/callback/sandbox/"
