"""Review of issue 28 (connect sessions): what an attacker or a careless caller tries, each a
test that failed before its fix (or pins a rule the review checked)."""

from __future__ import annotations

import pytest

from api.models import Scope
from api.services import service_key_create
from connections import broker_client
from connections.errors import BrokerError
from connections.models import Connection
from partners.models import EndUser
from partners.services import (
    EndUserBusy,
    end_user_delete,
    end_user_disconnect_all,
    end_user_upsert,
)
from tests.partners.support import bearer, end_user_connection

# --- offboarding: a revocation the broker did not confirm is never forgotten ----------------


@pytest.mark.django_db
def test_offboarding_again_retries_an_unconfirmed_revocation_and_delete_waits_for_it(
    tracker, sandbox_app, monkeypatch
):
    end_user = end_user_upsert(app=tracker, external_id="u-1")
    connection = end_user_connection(end_user, broker_app=sandbox_app)
    revoked: list[str] = []
    broker_down = True

    def token_revoke(profile, app, token, hint, **kwargs):
        if broker_down:
            raise BrokerError(category="network", message="the broker did not answer")
        revoked.append(hint)

    monkeypatch.setattr(broker_client, "token_revoke", token_revoke)
    [(_c, first)] = end_user_disconnect_all(end_user=end_user)
    assert not first.revoked and first.kept_for_retry
    # The grant may still be alive at the broker: forgetting the end user now would lose it.
    with pytest.raises(EndUserBusy):
        end_user_delete(end_user=end_user)
    assert Connection.objects.filter(pk=connection.pk).exists()
    broker_down = False
    [(_c, second)] = end_user_disconnect_all(end_user=end_user)  # offboarding again retries it
    assert second.revoked and revoked == ["refresh_token", "access_token"]
    [(_c, third)] = end_user_disconnect_all(end_user=end_user)  # and a third time is harmless
    assert not third.kept_for_retry and revoked == ["refresh_token", "access_token"]
    assert end_user_delete(end_user=end_user) == 1


@pytest.mark.django_db
def test_delete_end_user_over_the_api_is_409_while_a_revocation_is_pending(client, tracker, sandbox_app, monkeypatch):
    _k, key = service_key_create(name="t", scopes=[Scope.MANAGE_END_USERS], app=tracker)
    end_user = end_user_upsert(app=tracker, external_id="u-1")
    end_user_connection(end_user, broker_app=sandbox_app)

    def token_revoke(profile, app, token, hint, **kwargs):
        raise BrokerError(category="network", message="the broker did not answer")

    monkeypatch.setattr(broker_client, "token_revoke", token_revoke)
    offboarded = client.post("/api/v1/end-users/u-1/disconnect", headers=bearer(key))
    assert offboarded.status_code == 200 and offboarded.json()["connections"][0]["revoked"] is False
    refused = client.delete("/api/v1/end-users/u-1", headers=bearer(key))
    assert refused.status_code == 409 and "revo" in refused.json()["detail"]
    assert EndUser.objects.filter(pk=end_user.pk).exists()




@pytest.mark.django_db(transaction=True)
def test_a_connection_made_while_the_end_user_is_deleted_makes_the_delete_a_409_not_a_500(tracker):
    """A connect session still open in someone's browser can finish while the app deletes the
    end user: the delete is refused (EndUserBusy, 409) and nothing is half deleted."""
    from django.db.models.signals import pre_delete

    end_user = end_user_upsert(app=tracker, external_id="u-1")

    def connect_meanwhile(sender, instance, **kwargs):
        end_user_connection(instance, "late")

    pre_delete.connect(connect_meanwhile, sender=EndUser, dispatch_uid="review.connect_meanwhile")
    try:
        with pytest.raises(EndUserBusy):
            end_user_delete(end_user=end_user)
    finally:
        pre_delete.disconnect(dispatch_uid="review.connect_meanwhile", sender=EndUser)
    assert EndUser.objects.filter(pk=end_user.pk).exists()
