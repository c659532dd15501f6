"""Issue 24, medium 3: a service key reaches no further than its creator may grant.

The attack: a limited staff user created a `tokens:read` key with no users listed (which used
to mean every user) and read another person's live access token.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from api.models import ApiAuditEntry, Scope, ServiceKey
from api.services import KeyGrantRefused, service_key_authenticate, service_key_create
from connections.models import Connection
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db

LATER = {"expires_at_0": "2099-01-01", "expires_at_1": "00:00:00"}


@pytest.fixture
def limited_staff(django_user_model):
    """Staff who may manage service keys, without the permission to grant wide ones."""
    staff = django_user_model.objects.create_user(email="ops@example.com", password="x" * 12, is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="api", codename__in=[
        "add_servicekey", "change_servicekey", "view_servicekey"]))
    return with_second_factor(staff)


@pytest.fixture
def operators(settings):
    settings.ADMINS = [("Ops", "ops-team@example.com")]


def api_get(client, plaintext: str, path: str):
    return client.get(f"/api/v1/{path}", HTTP_AUTHORIZATION=f"Bearer {plaintext}")


def test_a_key_with_no_users_listed_sees_nothing(client, user, other_user):
    theirs = Connection.objects.create(user=other_user, broker_slug="sandbox", account_id="2")
    _, plaintext = service_key_create(name="k", scopes=[Scope.READ_STATUS, Scope.READ_TOKENS],
                                      expires_at=timezone.now() + timedelta(days=1))
    assert api_get(client, plaintext, "connections").json() == []
    assert api_get(client, plaintext, f"connections/{theirs.pk}").status_code == 404
    assert api_get(client, plaintext, f"connections/{theirs.pk}/token").status_code == 404


def test_limited_staff_cannot_create_a_token_key_nor_an_every_user_key(client, limited_staff, other_user):
    client.force_login(limited_staff)
    add = reverse("admin:api_servicekey_add")
    tokens = client.post(add, {"name": "steal", "scopes": [Scope.READ_TOKENS], "users": [other_user.pk],
                               "rate_limit_per_minute": "60", **LATER})
    assert tokens.status_code == 200 and "Only a superuser" in tokens.content.decode()
    everyone = client.post(add, {"name": "everyone", "scopes": [Scope.READ_STATUS], "all_users": "on",
                                 "rate_limit_per_minute": "60"})
    assert "Only a superuser" in everyone.content.decode()
    assert not ServiceKey.objects.exists()
    with pytest.raises(KeyGrantRefused):
        service_key_create(name="x", scopes=[Scope.READ_TOKENS], users=[other_user], created_by=limited_staff,
                           expires_at=timezone.now() + timedelta(days=1))
    # What limited staff may do still works: a status key for listed people.
    ok = client.post(add, {"name": "dashboard", "scopes": [Scope.READ_STATUS], "users": [other_user.pk],
                           "rate_limit_per_minute": "60"})
    assert ok.status_code == 200 and ServiceKey.objects.filter(name="dashboard").exists()


def test_token_and_call_keys_need_an_expiry(client, admin_user):
    client.force_login(admin_user)
    page = client.post(reverse("admin:api_servicekey_add"),
                       {"name": "forever", "scopes": [Scope.CALL], "all_users": "on", "rate_limit_per_minute": "60"})
    assert "needs an expiry date" in page.content.decode()
    assert not ServiceKey.objects.exists()


def test_creating_and_widening_a_key_is_audited_and_mailed_to_operators(client, admin_user, other_user, operators):
    client.force_login(admin_user)
    client.post(reverse("admin:api_servicekey_add"),
                {"name": "dash", "scopes": [Scope.READ_STATUS], "users": [other_user.pk],
                 "rate_limit_per_minute": "60"})
    key = ServiceKey.objects.get()
    assert ApiAuditEntry.objects.filter(key=key, action="key_created").exists()
    assert [m.subject for m in mail.outbox] == [f"[brokerlink] Service key dash (blk_{key.prefix}_…): created"]
    mail.outbox.clear()
    client.post(reverse("admin:api_servicekey_change", args=[key.pk]),
                {"name": "dash", "scopes": [Scope.READ_STATUS, Scope.READ_TOKENS], "all_users": "on",
                 "rate_limit_per_minute": "60", **LATER})
    widened = ApiAuditEntry.objects.get(key=key, action="key_widened")
    assert "tokens:read" in widened.result and "every user" in widened.result
    (alert,) = mail.outbox
    assert "widened" in alert.subject and alert.to == ["ops-team@example.com"]
    assert key.key_hash not in alert.body


def test_a_key_stops_working_when_its_creator_is_deactivated(client, admin_user, other_user):
    Connection.objects.create(user=other_user, broker_slug="sandbox", account_id="2")
    key, plaintext = service_key_create(name="k", scopes=[Scope.READ_STATUS], all_users=True, created_by=admin_user)
    assert len(api_get(client, plaintext, "connections").json()) == 1
    admin_user.is_active = False
    admin_user.save()
    assert service_key_authenticate(plaintext) is None
    assert api_get(client, plaintext, "connections").status_code == 401
