"""`make run` runs seed_demo on every start: an existing demo user keeps its password (and so
its open tabs stay signed in)."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_seed_demo_sets_the_password_once_and_leaves_it_alone(monkeypatch, capsys):
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
