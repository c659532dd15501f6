"""Security finding 8: account defaults (verification, passwords, sessions, caching, enumeration, lockout)."""

from __future__ import annotations

import time

import pytest
from django.core import mail

from accounts.middleware import STARTED_KEY
from tests.ops.test_production import manage, production_env

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def sign_in(client, email, password, address="10.0.0.1"):
    return client.post("/accounts/login/", {"login": email, "password": password}, REMOTE_ADDR=address)


@pytest.mark.parametrize("password", ["elevenchars", "password1234"])
def test_short_or_common_passwords_are_refused_at_sign_up(client, django_user_model, password):
    client.post("/accounts/signup/", {"email": "new@example.com", "password1": password, "password2": password})
    assert not django_user_model.objects.filter(email="new@example.com").exists()


def test_production_makes_email_verification_mandatory(tmp_path, transactional_db):
    result = manage(production_env(tmp_path), "shell", "-c",
                    "from django.conf import settings; print(settings.ACCOUNT_EMAIL_VERIFICATION)")
    assert result.stdout.strip().splitlines()[-1] == "mandatory", result.stderr


def test_sign_up_does_not_tell_whether_an_address_is_registered(client, user, settings):
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"  # as in production
    taken = client.post("/accounts/signup/", {"email": user.email, "password1": "brand-new-passphrase",
                                              "password2": "brand-new-passphrase"})
    fresh = client.post("/accounts/signup/", {"email": "nobody@example.com", "password1": "brand-new-passphrase",
                                              "password2": "brand-new-passphrase"})
    assert taken.status_code == fresh.status_code == 302
    assert taken["Location"] == fresh["Location"]
    assert len(mail.outbox) == 2  # the owner of the taken address is told by email, not the visitor


def test_pages_for_signed_in_people_are_not_stored(client, user):
    client.force_login(user)
    response = client.get("/connections/")
    assert "no-store" in response["Cache-Control"]


def test_sessions_have_an_idle_timeout_and_an_absolute_lifetime(client, user, settings):
    remembered = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD, "remember": "on"})
    assert remembered.status_code == 302
    response = client.get("/connections/")
    assert response.status_code == 200
    assert 0 < int(response.cookies["sessionid"]["max-age"]) <= 30 * 60  # renewed by each request
    session = client.session
    session[STARTED_KEY] = time.time() - 13 * 3600
    session.save()
    expired = client.get("/connections/")
    assert expired.status_code == 302 and expired["Location"].startswith("/accounts/login/")
    assert client.get("/connections/").status_code == 302  # signed out


def test_a_stranger_cannot_lock_someone_out(client, user):
    for _ in range(8):
        sign_in(client, user.email, "wrong-guess", address="203.0.113.9")
    assert "Too many failed login attempts" in sign_in(client, user.email, PASSWORD, "203.0.113.9").content.decode()
    assert sign_in(client, user.email, PASSWORD, address="198.51.100.7").status_code == 302


def test_the_failed_login_limit_holds_while_the_cache_is_down(client, user, settings):
    settings.CACHES = {"default": {"BACKEND": "ops.cache.TolerantRedisCache", "LOCATION": "redis://127.0.0.1:1/0",
                                   "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}}}
    for _ in range(6):
        sign_in(client, user.email, "wrong-guess")
    assert "Too many failed login attempts" in sign_in(client, user.email, PASSWORD).content.decode()
