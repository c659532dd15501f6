"""Connecting and reconnecting a brokerage account: the authorize URL, then the callback that
exchanges the code, checks the grant, learns the account and stores the connection."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.models import BrokerApp
from brokers.profile import BrokerProfile
from brokers.registry import UnknownBroker
from connections import broker_client, signals
from connections.errors import AUTH, CONFIGURATION, BrokerError
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.oauth_flow import PURPOSE_CONNECT, PURPOSE_RECONNECT, PendingFlow, flow_begin
from connections.services.failures import ConnectFailed, failure_code_for
from connections.state import connection_event_record, connection_transition
from connections.tokens import (
    connection_apply_token_response,
    refresh_claim_clear,
    token_meta_for,
    token_response_clean,
)
from vault.crypto import VaultError

logger = logging.getLogger(__name__)

OFFLINE_ACCESS = "offline_access"


@dataclass
class ConnectOutcome:
    connection: Connection
    kind: str  # ConnectionEvent.Kind.CONNECTED or RECONNECTED

    @property
    def message(self) -> str:
        label = self.connection.account_label or self.connection.account_number_masked or "account"
        verb = "Reconnected" if self.kind == ConnectionEvent.Kind.RECONNECTED else "Connected"
        return f"{verb} {label}."


@sensitive_variables()
def _revoke_quietly(profile: BrokerProfile, app: BrokerApp, token: dict) -> None:
    """Best effort: hand back tokens brokerlink obtained but will not keep."""
    if not profile.can_revoke_single_user:
        return
    for name in ("refresh_token", "access_token"):
        # Only strings: a malformed answer may carry anything under these names.
        if isinstance(token.get(name), str) and token[name]:
            try:
                broker_client.token_revoke(profile, app, token[name], name)
            except BrokerError:
                logger.info("connections.connect.discard_revoke_failed", extra={"broker": profile.slug})


def _flag_configuration(app: BrokerApp, error: BrokerError) -> None:
    from brokers.services import broker_app_flag_config_problem

    broker_app_flag_config_problem(app, error.message)


def sandbox_off(slug: str) -> bool:
    """The pretend broker is not offered when SANDBOX_ENABLED is off (production's default)."""
    from django.conf import settings

    from brokers.registry import SANDBOX_SLUG

    return slug == SANDBOX_SLUG and not settings.SANDBOX_ENABLED


def connect_authorize_url(
    request,
    *,
    slug: str,
    purpose: str,
    connection_id: str = "",
    environment: str | None = None,
    handoff: str = "",
    handoff_ref: str = "",
) -> str:
    """Begin a flow in this browser's session and return the broker's authorize URL; raises
    ConnectFailed("not_configured") for a broker this deployment cannot offer."""
    from brokers.services import broker_app_for, broker_app_is_configured

    if sandbox_off(slug):
        raise ConnectFailed("not_configured")
    app = broker_app_for(slug, environment)
    try:
        profile = broker_client.profile_for(slug, app.environment if app else "live")
    except UnknownBroker:
        raise ConnectFailed("not_configured") from None
    if app is None or not broker_app_is_configured(app, profile) or app.config_problem:
        raise ConnectFailed("not_configured")
    url = flow_begin(
        request,
        profile=profile,
        app=app,
        purpose=purpose,
        connection_id=connection_id,
        handoff=handoff,
        handoff_ref=handoff_ref,
    )
    logger.info("connections.connect.started", extra={"broker": slug, "purpose": purpose})
    return url


def connection_reconnect_url(request, connection: Connection) -> str:
    """The authorize URL for "Reconnect": a reconnect of this connection (same account), or,
    after a disconnect, a full new authorization, the only way such an account comes back.
    Raises ConnectFailed as connect_authorize_url does."""
    if connection.status == ConnectionStatus.DISCONNECTED:
        return connect_authorize_url(
            request, slug=connection.broker_slug, purpose=PURPOSE_CONNECT, environment=connection.environment
        )
    return connect_authorize_url(
        request,
        slug=connection.broker_slug,
        purpose=PURPOSE_RECONNECT,
        connection_id=str(connection.pk),
        environment=connection.environment,
    )


def _owner(user, end_user) -> dict:
    """The owner filter of a connection: a brokerlink user's, or a partner app's end user's."""
    if (user is None) == (end_user is None):
        raise ValueError("A connection has exactly one owner: a user or an end user.")
    return {"user": user} if user is not None else {"end_user": end_user}


@sensitive_variables()
def connection_authorize_complete(*, user=None, end_user=None, flow: PendingFlow, code: str) -> ConnectOutcome:
    """Exchange the code, learn the account, then create or update the connection in one transaction.

    Once the broker has issued tokens, every way out but success hands them back (revoked
    where the broker allows it) before the failure is raised: `_complete_after_exchange` runs
    inside one try/except that catches any exception. Raises ConnectFailed.

    The owner is `user` (a brokerlink account) or `end_user` (a partner app's end user); a
    reconnect only ever finds a connection of that same owner.
    """
    owner = _owner(user, end_user)
    app = BrokerApp.objects.filter(pk=flow.app_id, enabled=True).first()
    try:
        profile = broker_client.profile_for(flow.slug, flow.environment)
    except UnknownBroker as exc:
        raise ConnectFailed("not_configured") from exc
    if app is None:
        raise ConnectFailed("not_configured")
    try:
        token = broker_client.token_exchange_code(
            profile, app, code=code, redirect_uri=flow.redirect_uri, code_verifier=flow.code_verifier
        )
    except BrokerError as error:
        if error.category == CONFIGURATION:
            _flag_configuration(app, error)
        logger.warning("connections.connect.exchange_failed", extra={"broker": flow.slug, "category": error.category})
        raise ConnectFailed(failure_code_for(error), detail=error.message) from error
    try:
        return _complete_after_exchange(owner=owner, flow=flow, app=app, profile=profile, token=token)
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the tokens go back first
        failed = _as_connect_failed(exc, slug=flow.slug)
        _revoke_quietly(profile, app, token)
        if failed.code == "different_account":
            _record_refused_reconnect(owner=owner, flow=flow, profile=profile)
        raise failed from exc


def _as_connect_failed(exc: Exception, *, slug: str) -> ConnectFailed:
    """The failure a person sees for an exception raised after the code exchange."""
    if isinstance(exc, ConnectFailed):
        return exc
    if isinstance(exc, BrokerError):
        logger.warning("connections.connect.after_exchange_failed", extra={"broker": slug, "category": exc.category})
        if exc.error_code == broker_client.IDENTITY_MISSING_CODE:
            return ConnectFailed("identity_missing", detail=exc.message)
        code_name = "unexpected_response" if exc.category == AUTH else failure_code_for(exc)
        return ConnectFailed(code_name, detail=exc.message)
    if isinstance(exc, VaultError):
        logger.error("connections.connect.vault_error", extra={"broker": slug})
        return ConnectFailed("vault")
    # A bug or an unforeseen answer: logged with its type only (its message could quote a
    # broker's answer or a token), shown as an internal error.
    name = type(exc).__name__
    logger.error("connections.connect.internal_error", extra={"broker": slug, "error": name})
    return ConnectFailed("internal_error", detail=f"brokerlink failed while storing the connection ({name}).")


def _record_refused_reconnect(*, owner: dict, flow: PendingFlow, profile: BrokerProfile) -> None:
    """A reconnect that signed in to another account leaves a line in the connection's history."""
    connection = Connection.objects.filter(pk=flow.connection_id, **owner).first() if flow.connection_id else None
    if connection is None:
        return
    connection_event_record(
        connection=connection,
        kind=ConnectionEvent.Kind.RECONNECT_REFUSED,
        message=f"Reconnect refused: you signed in to a different {profile.name} account; nothing changed",
        actor=owner.get("user"),
    )


def requested_scopes(profile: BrokerProfile) -> set[str]:
    return {scope for scope in profile.scopes if scope}


def granted_scopes(profile: BrokerProfile, token: dict) -> set[str]:
    """What the broker says it granted; RFC 6749 §5.1: no `scope` means exactly what was asked."""
    raw = token.get("scope")
    if raw in (None, ""):
        return requested_scopes(profile)
    if isinstance(raw, list):
        return {str(item) for item in raw}
    separators = {profile.scope_separator, " ", ","}
    text = str(raw)
    for separator in separators - {" "}:
        text = text.replace(separator, " ")
    return set(text.split())


def grant_check(profile: BrokerProfile, token: dict) -> None:
    """Refuse a grant brokerlink cannot keep alive. Raises ConnectFailed (tokens handed back by the caller).

    - a broker that issues refresh tokens sent none;
    - offline_access was asked for (OIDC) and not granted: any refresh token dies with the
      broker's login session, so the connection would break within minutes or hours.
    Other scopes the broker left out are logged, not refused: brokerlink only reads the account.
    """
    asked, granted = requested_scopes(profile), granted_scopes(profile, token)
    if OFFLINE_ACCESS in asked and OFFLINE_ACCESS not in granted:
        raise ConnectFailed(
            "offline_access_denied",
            detail=f"{profile.name} granted {' '.join(sorted(granted)) or 'no scopes'} without offline_access.",
        )
    if profile.token_rules.issues_refresh_token and not token.get("refresh_token"):
        raise ConnectFailed("missing_refresh_token")
    if missing := asked - granted:
        logger.warning(
            "connections.connect.scopes_narrowed", extra={"broker": profile.slug, "missing": " ".join(sorted(missing))}
        )


@sensitive_variables()
def _complete_after_exchange(
    *, owner: dict, flow: PendingFlow, app: BrokerApp, profile: BrokerProfile, token: dict
) -> ConnectOutcome:
    token, _ = token_response_clean(profile, token)  # BrokerError(unexpected) names the bad field
    grant_check(profile, token)
    token_meta = token_meta_for(profile, token)
    identity = broker_client.account_identity(profile, flow.environment, token["access_token"], token_meta)
    try:
        with transaction.atomic():
            return _store_connection(owner=owner, flow=flow, app=app, profile=profile, token=token, identity=identity)
    except IntegrityError:
        # A concurrent callback for the same account created the row first: update it instead.
        with transaction.atomic():
            return _store_connection(owner=owner, flow=flow, app=app, profile=profile, token=token, identity=identity)


@sensitive_variables()
def _store_connection(
    *, owner: dict, flow: PendingFlow, app: BrokerApp, profile: BrokerProfile, token: dict, identity: dict
) -> ConnectOutcome:
    account_id = str(identity["account_id"])[:255]
    if flow.purpose == PURPOSE_RECONNECT and flow.connection_id:
        connection = Connection.objects.select_for_update().filter(pk=flow.connection_id, **owner).first()
        if connection is None:
            raise ConnectFailed("state_unknown")
        if connection.account_id != account_id or connection.broker_slug != flow.slug:
            logger.info("connections.reconnect.refused_other_account", extra={"connection_id": str(connection.pk)})
            raise ConnectFailed("different_account")
    else:
        connection = (
            Connection.objects.select_for_update()
            .filter(**owner, broker_slug=flow.slug, environment=flow.environment, account_id=account_id)
            .first()
        )
    created = connection is None
    if created:
        connection = Connection(**owner, broker_slug=flow.slug, environment=flow.environment, account_id=account_id)
    now = timezone.now()
    connection.broker_app = app
    connection.account_number_masked = str(identity.get("masked_number") or "")[:32]
    connection.account_label = str(identity.get("label") or "")[:255]
    connection.token_meta = {}
    connection.refresh_token = ""
    connection_apply_token_response(connection=connection, profile=profile, token=token, now=now, first_grant=True)
    connection.consecutive_failures = 0
    connection.retry_attempt = 0
    connection.last_error_category = ""
    connection.last_error_message = ""
    connection.last_success_at = now
    # A new grant starts a new health history (engine.health counts checks since
    # grant_started_at): no score until it has enough checks of its own.
    connection.health_score = None
    connection.quality = ""
    connection.next_check_at = now
    connection.disconnected_at = None
    connection.archived_at = None
    connection.revoke_pending_sealed = ""  # a new grant: the old one is the broker's to expire
    connection.lease_until = None
    connection.lease_owner = ""
    # A refresh of the old grant still out must not store its answer over this one
    # (engine.refresh stores an answer only while its claim holds or its token is still stored).
    refresh_claim_clear(connection)
    if created:
        connection.save()
    kind = ConnectionEvent.Kind.CONNECTED if created else ConnectionEvent.Kind.RECONNECTED
    connection_transition(
        connection=connection,
        to_status=ConnectionStatus.CONNECTED,
        kind=kind,
        message=f"Authorized at {profile.name}",
        actor=owner.get("user"),
        save=False,
    )
    connection.save()
    signals.broker_answered.send(sender=None, profile=profile, now=now)
    logger.info(
        "connections.connect.done",
        extra={"connection_id": str(connection.pk), "broker": flow.slug, "kind": kind},
    )
    return ConnectOutcome(connection=connection, kind=kind)
