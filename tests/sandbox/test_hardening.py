"""Security finding 11: the sandbox broker when it is switched on in production."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache

from sandbox import services
from sandbox.models import SandboxClient
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def demo_user():
    return services.user_create(username="demo-x", password="demo-password-123")


def test_login_cookie_is_secure_over_https(client, demo_user):
    response = client.post("/sandbox/login/", {"username": "demo-x", "password": "demo-password-123"}, secure=True)
    assert response.status_code == 302
    assert response.cookies["sandbox_login"]["secure"]


def test_sandbox_login_is_throttled(client, demo_user):
    for _ in range(6):
        client.post("/sandbox/login/", {"username": "demo-x", "password": "wrong"})
    response = client.post("/sandbox/login/", {"username": "demo-x", "password": "demo-password-123"})
    assert response.status_code == 401 and "Too many failed sign-ins" in response.content.decode()


def test_control_needs_its_own_permission(client, django_user_model):
    staff = django_user_model.objects.create_user(email="ops@example.com", password="x" * 12, is_staff=True)
    client.force_login(staff)
    assert client.get("/sandbox/control/").status_code in (302, 403)
    assert client.get("/sandbox/control/api/users").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="control_sandbox"))
    client.force_login(django_user_model.objects.get(pk=staff.pk))
    assert client.get("/sandbox/control/").status_code == 302  # to enrol a second factor first
    with_second_factor(staff)
    client.force_login(django_user_model.objects.get(pk=staff.pk))  # a sign-in that passed it
    assert client.get("/sandbox/control/").status_code == 200


def test_client_secret_is_stored_hashed(client):
    created = services.client_create(name="x", redirect_uris=["http://127.0.0.1:1/cb"])
    stored = SandboxClient.objects.get(pk=created.pk)
    assert created.plain_secret and created.plain_secret not in stored.client_secret
    assert stored.client_secret.startswith("sha256$")
    assert stored.check_client_secret(created.plain_secret) and not stored.check_client_secret("guess")
    assert "client_secret" not in client.get(f"/sandbox/control/api/clients/{created.client_id}").content.decode()


def test_sandbox_slug_is_refused_when_the_sandbox_is_off(client, user, settings):
    settings.SANDBOX_ENABLED = False
    client.force_login(user)
    start = client.post("/connections/connect/sandbox/")
    assert start.status_code == 400 and 'data-failure="not_configured"' in start.content.decode()
    back = client.get("/connections/callback/sandbox/?state=x&code=y")
    assert back.status_code == 400 and 'data-failure="not_configured"' in back.content.decode()
