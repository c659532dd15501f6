"""Disconnecting: the tokens wiped first, then revoked at the broker (RFC 7009), and
"Try revoking again" for what the broker did not confirm."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.models import BrokerApp
from brokers.profile import BrokerProfile
from brokers.registry import UnknownBroker
from connections import broker_client
from connections.errors import (
    BrokerError,
)
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.state import connection_event_record, connection_transition
from connections.tokens import refresh_claim_clear
from vault.crypto import VaultError

logger = logging.getLogger(__name__)


@dataclass
class DisconnectOutcome:
    broker_name: str
    revoked: bool
    reason: str = ""
    manual_revoke_url: str = ""
    # The broker did not confirm: a sealed copy is kept for "Try revoking again" only.
    kept_for_retry: bool = False

    @property
    def message(self) -> str:
        if self.revoked:
            return f"Revoked at {self.broker_name}. The connection is disconnected and its tokens are deleted."
        where = self.manual_revoke_url or f"your {self.broker_name} account's security settings"
        if self.kept_for_retry:
            return (
                f"Not revoked: {self.reason} Revoke access by hand at {where}, or try revoking again. "
                "brokerlink can no longer use the tokens."
            )
        return (
            f"Not revoked: {self.reason} Revoke access by hand at {where}. "
            "brokerlink has deleted its copy of the tokens."
        )


def connection_revocation_preview(connection: Connection) -> dict:
    """What the disconnect dialog says before anything happens: the broker's name, whether
    brokerlink can revoke this person's grant there, and where to revoke it by hand."""
    try:
        profile = broker_client.profile_for(connection.broker_slug, connection.environment)
    except UnknownBroker:
        return {"broker_name": connection.broker_slug, "can_revoke": False, "manual_revoke_url": ""}
    return {
        "broker_name": profile.name,
        "can_revoke": profile.can_revoke_single_user,
        "revocation_scope": profile.revocation_scope,
        "manual_revoke_url": profile.manual_revoke_url,
    }


def _revocation_skip_reason(profile: BrokerProfile) -> str:
    if profile.revocation_scope == "all_users_of_key":
        return (
            f"{profile.name}'s revoke endpoint signs out every brokerlink user at once, "
            "so brokerlink never calls it for one person."
        )
    return f"{profile.name} offers apps no way to revoke tokens."


@sensitive_variables()
def connection_disconnect(connection: Connection, actor=None) -> DisconnectOutcome:
    """Wipe the tokens, mark the connection disconnected, then revoke at the broker (RFC 7009).

    Tokens are wiped and the status changed in one transaction before any network call, so
    a failed or slow revocation can never leave usable tokens behind. Revocation sends the
    refresh token first (it ends the grant at most brokers), then the access token. Brokers
    whose endpoint revokes every user of the key (TradeStation) or that have none are never
    called; the outcome says so and points at the broker's manual revocation page.
    Safe to run twice: a connection already disconnected with no tokens is left as it is.
    """
    with transaction.atomic():
        locked = Connection.objects.select_for_update().get(pk=connection.pk)
        tokens: dict[str, str] = {}
        vault_failed = False
        try:
            tokens = {"refresh_token": locked.refresh_token, "access_token": locked.access_token}
        except VaultError:
            vault_failed = True
        already = locked.status == ConnectionStatus.DISCONNECTED and not locked.has_tokens
        locked.access_token = ""
        locked.refresh_token = ""
        locked.access_expires_at = None
        locked.refresh_expires_at = None
        locked.reauth_deadline_at = None
        locked.disconnected_at = locked.disconnected_at if already else timezone.now()
        locked.lease_until = None
        locked.lease_owner = ""
        # A refresh still out must not store its answer on a disconnected row (engine.refresh).
        refresh_claim_clear(locked)
        if not already:
            connection_transition(
                connection=locked,
                to_status=ConnectionStatus.DISCONNECTED,
                kind=ConnectionEvent.Kind.DISCONNECTED,
                message="Disconnected by the user" if actor is not None else "Disconnected",
                actor=actor,
                save=False,
            )
        locked.save()
    _copy_state(locked, connection)

    try:
        profile = broker_client.profile_for(connection.broker_slug, connection.environment)
    except UnknownBroker:
        return _record_revocation(
            connection, actor, DisconnectOutcome(connection.broker_slug, False, "the broker is no longer configured.")
        )
    outcome = DisconnectOutcome(profile.name, False, manual_revoke_url=profile.manual_revoke_url)
    if already:
        outcome.reason = "the connection was already disconnected."
        return outcome
    if not profile.can_revoke_single_user:
        outcome.reason = _revocation_skip_reason(profile)
        return _record_revocation(connection, actor, outcome)
    if vault_failed:
        outcome.reason = "brokerlink could not decrypt the stored tokens to revoke them."
        return _record_revocation(connection, actor, outcome)
    return _revocation_attempt(connection, actor, profile, outcome, tokens, copy_kept=False)


@sensitive_variables()
def _revocation_attempt(
    connection: Connection,
    actor,
    profile: BrokerProfile,
    outcome: DisconnectOutcome,
    tokens: dict[str, str],
    *,
    copy_kept: bool,
) -> DisconnectOutcome:
    """Ask the broker to revoke `tokens` and record what it said. While the broker has not
    confirmed, a sealed copy is kept for "Try revoking again" (`copy_kept`: one already is, as
    on a retry); once it confirms, the copy goes."""
    app = connection.broker_app
    if app is None:
        outcome.reason = "this brokerlink deployment no longer has credentials for the broker."
        return _record_revocation(connection, actor, outcome)
    try:
        _revoke_at_broker(profile, app, tokens)
    except BrokerError as error:
        outcome.reason = f"{error.message}"
        if not copy_kept:
            _revoke_pending_keep(connection, tokens)
        outcome.kept_for_retry = True
        return _record_revocation(connection, actor, outcome, category=error.category)
    if copy_kept:
        Connection.objects.filter(pk=connection.pk).update(revoke_pending_sealed="")
        connection.revoke_pending_sealed = ""
    outcome.revoked = True
    return _record_revocation(connection, actor, outcome)


@sensitive_variables()
def _revoke_at_broker(profile: BrokerProfile, app: BrokerApp, tokens: dict[str, str]) -> None:
    """RFC 7009: the refresh token first (at most brokers that ends the whole grant), then the access token."""
    for hint in ("refresh_token", "access_token"):
        if tokens.get(hint):
            broker_client.token_revoke(profile, app, tokens[hint], hint)


def _revoke_pending_keep(connection: Connection, tokens: dict[str, str]) -> None:
    """Keep the old tokens sealed for "Try revoking again" only; no status reads them."""
    connection.revoke_pending = json.dumps({k: v for k, v in tokens.items() if v})
    Connection.objects.filter(pk=connection.pk).update(revoke_pending_sealed=connection.revoke_pending_sealed)


@sensitive_variables()
def connection_revoke_retry(connection: Connection, actor=None) -> DisconnectOutcome:
    """Try again to revoke at the broker what an earlier disconnect could not. Safe twice:
    revoking a token twice is harmless (RFC 7009), and a confirmed revocation wipes the copy."""
    try:
        profile = broker_client.profile_for(connection.broker_slug, connection.environment)
    except UnknownBroker:
        return DisconnectOutcome(connection.broker_slug, False, "the broker is no longer configured.")
    outcome = DisconnectOutcome(profile.name, False, manual_revoke_url=profile.manual_revoke_url)
    if connection.status != ConnectionStatus.DISCONNECTED or not connection.revoke_pending_sealed:
        outcome.reason = "brokerlink holds nothing more to revoke."
        return outcome
    try:
        tokens = json.loads(connection.revoke_pending)
    except (VaultError, ValueError):
        Connection.objects.filter(pk=connection.pk).update(revoke_pending_sealed="")
        outcome.reason = "brokerlink could not decrypt the stored tokens to revoke them."
        return _record_revocation(connection, actor, outcome)
    return _revocation_attempt(connection, actor, profile, outcome, tokens, copy_kept=True)


def _copy_state(source: Connection, target: Connection) -> None:
    for name in (
        "status",
        "status_changed_at",
        "access_token_sealed",
        "refresh_token_sealed",
        "access_expires_at",
        "refresh_expires_at",
        "reauth_deadline_at",
        "disconnected_at",
        "updated_at",
    ):
        setattr(target, name, getattr(source, name))


def _record_revocation(
    connection: Connection, actor, outcome: DisconnectOutcome, category: str = ""
) -> DisconnectOutcome:
    if outcome.revoked:
        kind, message = ConnectionEvent.Kind.REVOKED, f"Revoked at {outcome.broker_name}"
    else:
        kind, message = ConnectionEvent.Kind.REVOCATION_FAILED, f"Not revoked: {outcome.reason}"
    connection_event_record(connection=connection, kind=kind, message=message, category=category, actor=actor)
    logger.info(
        "connections.disconnect.done",
        extra={"connection_id": str(connection.pk), "revoked": outcome.revoked, "category": category},
    )
    return outcome
