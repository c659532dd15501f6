"""Security finding 4: admin is reached only through allauth's rate-limited login, with a second factor."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.support import totp_code, with_second_factor

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-unusual-passphrase"


def sign_in(client: Client, email: str, password: str, *, next_url: str = "/admin/"):
    return client.post(f"/accounts/login/?next={next_url}", {"login": email, "password": password})


def test_admin_login_form_is_never_shown(client, django_user_model):
    django_user_model.objects.create_superuser(email="root@example.com", password=PASSWORD)
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=%2Fadmin%2F"
    # Django's own login form (no rate limit, no second factor) does not sign anyone in.
    client.post("/admin/login/", {"username": "root@example.com", "password": PASSWORD, "next": "/admin/"})
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


def test_fifteen_wrong_passwords_then_the_right_one_does_not_get_in(client, django_user_model):
    with_second_factor(django_user_model.objects.create_superuser(email="root@example.com", password=PASSWORD))
    for _ in range(15):
        sign_in(client, "root@example.com", "wrong-guess")
    response = sign_in(client, "root@example.com", PASSWORD)
    assert "_auth_user_id" not in client.session
    assert "Too many failed login attempts" in response.content.decode() or response.status_code == 429


def test_staff_without_a_second_factor_cannot_reach_admin(client, django_user_model):
    django_user_model.objects.create_superuser(email="root@example.com", password=PASSWORD)
    sign_in(client, "root@example.com", PASSWORD)
    assert client.get("/admin/").status_code == 302
    enrol = client.get("/admin/login/?next=/admin/")
    assert enrol["Location"] == "/accounts/2fa/"  # where the authenticator app or key is set up
    assert client.get("/admin/connections/connection/").status_code == 302
    assert client.get("/metrics").status_code == 403


def test_staff_with_totp_needs_the_code_then_reaches_admin(client, django_user_model):
    root = with_second_factor(django_user_model.objects.create_superuser(email="root@example.com", password=PASSWORD))
    first = sign_in(client, "root@example.com", PASSWORD)
    assert first["Location"].startswith("/accounts/2fa/authenticate/")
    assert client.get("/admin/").status_code == 302  # password alone is not a sign-in
    second = client.post("/accounts/2fa/authenticate/", {"code": totp_code(root.totp_secret)})
    assert second.status_code == 302 and second["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_force_logged_in_staff_without_a_second_factor_is_refused(client, django_user_model):
    staff = django_user_model.objects.create_user(email="ops@example.com", password=PASSWORD, is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/").status_code == 302
    system = client.get("/connections/system/")
    assert system.status_code == 302 and system["Location"] == "/accounts/2fa/"  # sent to enrol a factor
