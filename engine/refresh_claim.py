"""The refresh claim on a connection's row: take it, let it go, store the answer under it.

engine.refresh holds no transaction or row lock across the broker call; these short writes are
what make its refresh single-flight. Only the claimant stores an answer, and an answer is stored
even after its claim expired as long as the refresh token it spent is still the stored one (it
holds the only copy of a rotated refresh token). A grant replaced or wiped while the refresh was
out is never overwritten with the old grant's tokens.

"The stored one" is compared opened, never as ciphertext: a key rotation (manage.py
rotate_token_keys) re-seals the same refresh token under a new key while a refresh is out.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.profile import BrokerProfile
from connections.models import Connection
from engine.dbretry import db_write_retried
from vault.crypto import VaultError

# The refresh's records keep one logger name, wherever in the refresh they are written.
logger = logging.getLogger("engine.refresh")

# The refresh claim's own columns (connections.tokens.refresh_claim_clear empties them).
CLAIM_FIELDS = [
    "refresh_claim_owner",
    "refresh_claim_until",
    "refresh_sent_at",
    "refresh_later_answer_at",
    "updated_at",
]
TOKEN_FIELDS = [
    "access_token_sealed",
    "refresh_token_sealed",
    "token_type",
    "scope",
    "access_expires_at",
    "refresh_expires_at",
    "grant_started_at",
    "reauth_deadline_at",
    "last_refreshed_at",
    "token_meta",
    *CLAIM_FIELDS,
]


def refresh_claim(connection: Connection, *, owner: str, now: datetime, until: datetime) -> bool:
    """Take the refresh for `owner` if nobody holds it and the refresh token is still the one read,
    and so is the unknown request the decision was about (another resend may have gone out since)."""
    return bool(
        Connection.objects.filter(
            pk=connection.pk,
            refresh_token_sealed=connection.refresh_token_sealed,
            refresh_sent_at=connection.refresh_sent_at,
        )
        .filter(Q(refresh_claim_until__isnull=True) | Q(refresh_claim_until__lte=now))
        .update(refresh_claim_owner=owner, refresh_claim_until=until, refresh_sent_at=now, refresh_later_answer_at=None)
    )


def refresh_claim_release(connection_id, *, owner: str, outcome_known: bool) -> None:
    """Drop our claim. An unknown outcome keeps refresh_sent_at: it is what makes the next
    attempt wait (engine.rotation)."""
    fields = {"refresh_claim_owner": "", "refresh_claim_until": None}
    if outcome_known:
        fields["refresh_sent_at"] = None
        fields["refresh_later_answer_at"] = None
    db_write_retried(lambda: Connection.objects.filter(pk=connection_id, refresh_claim_owner=owner).update(**fields))


@sensitive_variables()
def _holds_refresh_token(connection: Connection, spent: str) -> bool:
    """Whether the row still stores the refresh token `spent`. Opened, not compared as ciphertext:
    a key rotation re-seals the same token under a new key, and its answer is still this row's.
    A stored token this process cannot open is not known to be ours."""
    if not connection.refresh_token_sealed or not spent:
        return False
    try:
        stored = connection.refresh_token
    except VaultError:
        logger.warning("connections.refresh.stored_token_unreadable", extra={"connection_id": str(connection.pk)})
        return False
    return hmac.compare_digest(stored.encode(), spent.encode())


def _answer_still_ours(connection: Connection, *, owner: str, spent: str) -> bool:
    """Whether a refresh answer may be stored on this row: our claim still holds, or the refresh
    token we spent is still the stored one. Neither means the grant was replaced (a reconnect)
    or wiped (a disconnect) while the refresh was out, and storing would put the old grant's
    tokens over that."""
    return connection.refresh_claim_owner == owner or _holds_refresh_token(connection, spent)


def _answer_dropped(connection_id) -> None:
    logger.error("connections.refresh.answer_dropped", extra={"connection_id": str(connection_id)})


@sensitive_variables()
def refresh_answer_store(
    connection_id, *, owner: str, spent: str, profile: BrokerProfile, token: dict
) -> Connection | None:
    """Store a refresh answer in one short transaction and clear the claim; None when the
    answer is no longer this row's to store (`_answer_still_ours`).

    Stored even if our claim has expired meanwhile, as long as the refresh token we spent (`spent`,
    the opened token sent) is still the stored one: the answer holds the only copy of a rotated
    refresh token."""
    from connections.tokens import connection_apply_token_response, refresh_claim_clear

    def write() -> Connection | None:
        with transaction.atomic():
            connection = (
                Connection.objects.select_for_update(of=("self",)).select_related("broker_app").get(pk=connection_id)
            )
            if not _answer_still_ours(connection, owner=owner, spent=spent):
                _answer_dropped(connection_id)
                return None
            connection_apply_token_response(
                connection=connection, profile=profile, token=token, now=timezone.now(), first_grant=False
            )
            refresh_claim_clear(connection)
            connection.save(update_fields=TOKEN_FIELDS)
            return connection

    return db_write_retried(write)


@sensitive_variables()
def refresh_token_salvage(connection_id, *, owner: str, spent: str, profile: BrokerProfile, token: dict) -> None:
    """The answer is unusable but may carry a rotated refresh token: keep that, or the grant is lost."""
    from connections.tokens import TOKEN_PATTERN, refresh_claim_clear

    new_refresh = token.get("refresh_token") if isinstance(token, dict) else None
    if not isinstance(new_refresh, str) or not TOKEN_PATTERN.fullmatch(new_refresh):
        refresh_claim_release(connection_id, owner=owner, outcome_known=True)
        return

    def write() -> None:
        with transaction.atomic():
            connection = Connection.objects.select_for_update(of=("self",)).get(pk=connection_id)
            if not _answer_still_ours(connection, owner=owner, spent=spent):
                _answer_dropped(connection_id)
                return
            connection.refresh_token = new_refresh
            refresh_claim_clear(connection)
            connection.save(update_fields=["refresh_token_sealed", *CLAIM_FIELDS])

    db_write_retried(write)
