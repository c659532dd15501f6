"""Service keys: created by an admin and shown once, stored hashed, revocable, limited."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from api.models import Scope, ServiceKey
from api.services import service_key_authenticate, service_key_connections, service_key_create, service_key_revoke
from connections.models import Connection
from tests.support import with_second_factor

pytestmark = pytest.mark.django_db


def test_an_admin_creates_a_key_shown_once_and_stored_hashed(client, django_user_model):
    root = with_second_factor(django_user_model.objects.create_superuser(email="root@example.com", password="x" * 12))
    client.force_login(root)
    page = client.post(
        reverse("admin:api_servicekey_add"),
        {"name": "trading", "scopes": [Scope.READ_STATUS, Scope.CALL], "broker_slugs": ["sandbox"],
         "all_users": "on", "expires_at_0": "2099-01-01", "expires_at_1": "00:00:00", "rate_limit_per_minute": "60"},
    )
    assert page.status_code == 200, page.content.decode()[:2000]
    key = ServiceKey.objects.get()
    shown = page.content.decode().split("<pre", 1)[1].split(">", 1)[1].split("</pre>", 1)[0].strip()
    assert shown.startswith(f"blk_{key.prefix}_")
    assert key.key_hash == hashlib.sha256(shown.split("_", 2)[2].encode()).hexdigest()
    assert key.created_by == root and key.broker_slugs == ["sandbox"]
    assert service_key_authenticate(shown) == key
    change = client.get(reverse("admin:api_servicekey_change", args=[key.pk])).content.decode()
    assert shown not in change and key.key_hash not in change
    client.post(reverse("admin:api_servicekey_changelist"), {"action": "revoke", "_selected_action": [key.pk]})
    assert service_key_authenticate(shown) is None


def test_wrong_revoked_and_expired_keys_do_not_authenticate():
    key, plaintext = service_key_create(name="k", scopes=[Scope.READ_STATUS])
    assert service_key_authenticate(plaintext) == key
    assert service_key_authenticate(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    assert service_key_authenticate("blk_nope_x") is None and service_key_authenticate("") is None
    _, expired = service_key_create(name="old", scopes=[Scope.READ_STATUS],
                                    expires_at=timezone.now() - timedelta(seconds=1))
    assert service_key_authenticate(expired) is None
    service_key_revoke(key)
    assert service_key_authenticate(plaintext) is None


def test_a_key_limited_to_users_and_brokers_sees_only_their_connections(user, other_user):
    mine = Connection.objects.create(user=user, broker_slug="sandbox", account_id="1")
    Connection.objects.create(user=other_user, broker_slug="sandbox", account_id="2")
    Connection.objects.create(user=user, broker_slug="alpaca", account_id="3")
    key, _ = service_key_create(name="k", scopes=[Scope.READ_STATUS], broker_slugs=["sandbox"], users=[user])
    assert list(service_key_connections(key)) == [mine]
    nobody, _ = service_key_create(name="none listed", scopes=[Scope.READ_STATUS])
    assert service_key_connections(nobody).count() == 0  # no users listed: no connection (issue 24)
    everything, _ = service_key_create(name="all", scopes=[Scope.READ_STATUS], all_users=True)
    assert service_key_connections(everything).count() == 3


def test_the_audit_trail_is_pruned_after_its_retention(settings):
    from api.models import ApiAuditEntry
    from api.services import api_audit_prune, api_audit_record

    settings.API_AUDIT_RETENTION_DAYS = 30
    old = api_audit_record(key=None, action="proxy", status_code=200)
    ApiAuditEntry.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    recent = api_audit_record(key=None, action="proxy", status_code=200)
    assert api_audit_prune() == 1
    assert list(ApiAuditEntry.objects.all()) == [recent]
