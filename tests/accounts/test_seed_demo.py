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


def test_seed_demo_sets_the_password_once_and_leaves_it_alone(monkeypatch, capsys):
    """A restart of `make run` must not sign out open tabs or undo a password the person chose."""
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("DEMO_PASSWORD", "first-password-1")
    call_command("seed_demo")
    user = get_user_model().objects.get(email="demo@brokerlink.local")
    assert user.check_password("first-password-1")
    user.set_password("chosen-by-the-person")
    user.save()

    monkeypatch.setenv("DEMO_PASSWORD", "second-password-2")
    call_command("seed_demo")
    user.refresh_from_db()
    assert user.check_password("chosen-by-the-person")
    assert "unchanged" in capsys.readouterr().out
