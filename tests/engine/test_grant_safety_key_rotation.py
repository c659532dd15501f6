"""A vault key rotation (manage.py rotate_token_keys) while a refresh is out: it re-seals the
same refresh token under a new key, and the refresh's answer must still be stored. The answer
holds the only copy of the rotated refresh token; dropping it loses the grant."""

from __future__ import annotations

from connections import broker_client
from connections.models import Connection, ConnectionStatus
from engine.refresh import connection_refresh
from vault.crypto import generate_key, key_id_of
from vault.services import vault_rotate_keys


def test_a_refresh_answer_is_stored_after_a_key_rotation_resealed_the_token_it_spent(world, settings, monkeypatch):
    conn = world.connection()
    spent = conn.refresh_token
    old_key = key_id_of(conn.refresh_token_sealed)
    real_token_refresh = broker_client.token_refresh
    answers = []

    def answered_then_rotated(*args, **kwargs):
        answer = real_token_refresh(*args, **kwargs)  # the broker rotated: `spent` is used up
        answers.append(answer)
        # While the answer travels back: the claim no longer holds (it expired and was let go)...
        Connection.objects.filter(pk=conn.pk).update(refresh_claim_owner="", refresh_claim_until=None)
        # ...and an operator rotates the vault key, re-sealing the same refresh token.
        settings.TOKEN_ENCRYPTION_KEYS = f"k2:{generate_key()},{settings.TOKEN_ENCRYPTION_KEYS}"
        assert vault_rotate_keys().resealed >= 1
        resealed = Connection.objects.get(pk=conn.pk)
        assert key_id_of(resealed.refresh_token_sealed) == "k2" != old_key
        assert resealed.refresh_token == spent, "the rotation changed the ciphertext, not the token"
        return answer

    monkeypatch.setattr(broker_client, "token_refresh", answered_then_rotated)
    result = connection_refresh(conn.pk, reason="manual", force=True)

    assert result.refreshed, result.reason
    row = Connection.objects.get(pk=conn.pk)
    assert row.refresh_token == answers[0]["refresh_token"] != spent, "the rotated refresh token is kept"
    assert (row.refresh_claim_owner, row.refresh_sent_at) == ("", None)
    # The stored token is the live one: the next refresh works, nothing was spent twice.
    monkeypatch.setattr(broker_client, "token_refresh", real_token_refresh)
    assert connection_refresh(conn.pk, reason="manual", force=True).refreshed
    assert world.counters()["rotated_reuses"] == 0
    assert Connection.objects.get(pk=conn.pk).status == ConnectionStatus.CONNECTED


def test_a_token_rejected_before_a_key_rotation_is_still_refreshed_after_it(world, settings):
    conn = world.connection()
    rejected = conn.access_token_sealed  # what a heartbeat just sent and the broker answered 401
    settings.TOKEN_ENCRYPTION_KEYS = f"k2:{generate_key()},{settings.TOKEN_ENCRYPTION_KEYS}"
    assert vault_rotate_keys().resealed >= 1
    resealed = Connection.objects.get(pk=conn.pk)
    assert resealed.access_token_sealed != rejected and resealed.access_token == conn.access_token
    # The 401's forced refresh: the same access token under a new key is not "already refreshed".
    result = connection_refresh(conn.pk, reason="rejected", force=True, rejected_access_sealed=rejected)
    assert result.refreshed, result.reason
    assert result.connection.access_token != conn.access_token
    assert world.counters()["rotated_reuses"] == 0
