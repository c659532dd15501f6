"""Sessions: Django's own database store through its public API (no private override), with
Django's rules: a live session loads, an expired, unknown or malformed key loads nothing."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

pytestmark = pytest.mark.django_db


def _store_class():
    return import_module(settings.SESSION_ENGINE).SessionStore


def test_the_project_uses_djangos_database_store():
    assert settings.SESSION_ENGINE == "django.contrib.sessions.backends.db"


def test_a_live_session_loads_its_data():
    store = _store_class()()
    store["cart"] = {"broker": "sandbox", "n": 3}
    store.create()
    again = _store_class()(store.session_key)
    assert again.load() == {"cart": {"broker": "sandbox", "n": 3}}
    assert again.session_key == store.session_key


def test_an_expired_session_loads_nothing_and_forgets_its_key():
    store = _store_class()()
    store["user"] = "someone"
    store.create()
    Session.objects.filter(session_key=store.session_key).update(expire_date=timezone.now() - timedelta(seconds=1))
    again = _store_class()(store.session_key)
    assert again.load() == {}
    assert again.session_key is None


@pytest.mark.parametrize("key", ["x" * 40, "short", "", None, "'; DROP TABLE django_session; --" + "a" * 10])
def test_unknown_or_malformed_keys_load_nothing(key):
    store = _store_class()(key)
    assert store.load() == {}
    assert store.session_key is None
    assert Session.objects.model._meta.db_table == "django_session"  # the table is still there
