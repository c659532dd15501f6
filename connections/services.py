"""Connecting, reconnecting and disconnecting brokerage accounts.

Views, admin actions and tasks call these; none of them re-implements a rule.

    connection_authorize_complete(user=..., flow=..., code=...)  -> ConnectOutcome  (callback)
    connection_disconnect(connection, actor)                     -> DisconnectOutcome
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.models import BrokerApp
from brokers.profile import BrokerProfile
from brokers.registry import UnknownBroker
from connections import broker_client
from connections.errors import (
    AUTH,
    BROKER_FAULT,
    CONFIGURATION,
    MEANING,
    NETWORK,
    RATE_LIMITED,
    UNEXPECTED,
    BrokerError,
)
from connections.models import Connection, ConnectionEvent, ConnectionStatus
from connections.oauth_flow import PURPOSE_RECONNECT, PendingFlow, flow_begin
from connections.state import connection_event_record, connection_transition
from connections.tokens import connection_apply_token_response, token_meta_for, token_response_clean
from vault.crypto import VaultError

logger = logging.getLogger(__name__)

OFFLINE_ACCESS = "offline_access"
TRY_AGAIN = "Start the connection again from the broker list."


@dataclass(frozen=True)
class Failure:
    """What the person sees when a connect or reconnect fails."""

    title: str
    what_happened: str
    meaning: str
    next_step: str
    http_status: int = 400


FAILURES: dict[str, Failure] = {
    "access_denied": Failure(
        "You declined access",
        "The broker reports that you did not allow brokerlink access to this account.",
        "Nothing was connected and brokerlink holds no tokens for this account.",
        "If that was a mistake, connect again and choose Allow on the broker's page.",
    ),
    "authorization_error": Failure(
        "The broker refused the authorization",
        "The broker sent the browser back with an error instead of a code.",
        "Nothing was connected.",
        TRY_AGAIN + " If it keeps happening, tell your administrator.",
    ),
    "state_unknown": Failure(
        "This sign-in link is not one brokerlink started",
        "The callback carried a state brokerlink did not issue for your session (forged, or from another browser).",
        "brokerlink refused it so nobody can attach their brokerage account to yours (CSRF defence).",
        TRY_AGAIN,
    ),
    "state_missing": Failure(
        "The broker sent no state",
        "The callback arrived without the state parameter brokerlink sent.",
        "brokerlink cannot tell which sign-in this answers, so it refused it.",
        TRY_AGAIN,
    ),
    "state_replayed": Failure(
        "This sign-in was already used",
        "The callback reused a state that already completed (a reload, the back button, or a replay).",
        "Each sign-in works once, so nothing changed.",
        "Open your connections to see the account, or connect again.",
    ),
    "state_expired": Failure(
        "This sign-in took too long",
        "More than 10 minutes passed between leaving brokerlink and coming back.",
        "Sign-ins expire after 10 minutes, so nothing was connected.",
        TRY_AGAIN,
    ),
    "issuer_missing": Failure(
        "The answer did not name its authorization server",
        "The callback carried no issuer (iss), although this broker always sends one.",
        "brokerlink refused it to defend against authorization-server mix-up attacks.",
        TRY_AGAIN + " If it keeps happening, tell your administrator.",
    ),
    "issuer_mismatch": Failure(
        "The answer came from the wrong authorization server",
        "The callback's issuer (iss) does not match the broker you chose.",
        "brokerlink refused it to defend against authorization-server mix-up attacks.",
        TRY_AGAIN + " If it keeps happening, tell your administrator.",
    ),
    "code_missing": Failure(
        "The broker sent no authorization code",
        "The callback had neither a code nor an error.",
        "Without a code there is nothing to exchange for tokens.",
        TRY_AGAIN,
    ),
    "code_rejected": Failure(
        "The broker rejected the authorization code",
        "The broker refused to exchange the code for tokens (it may have expired or already been used).",
        "Nothing was connected.",
        TRY_AGAIN,
    ),
    "broker_unreachable": Failure(
        "The broker did not answer in time",
        "brokerlink could not reach the broker, or it was too slow to answer.",
        MEANING[NETWORK],
        "Wait a minute, then try again. Nothing was connected.",
        502,
    ),
    "broker_down": Failure(
        "The broker is having problems",
        "The broker answered with a server error or asked brokerlink to slow down.",
        MEANING[BROKER_FAULT],
        "Wait a few minutes, then try again. Nothing was connected.",
        502,
    ),
    "unexpected_response": Failure(
        "The broker sent something brokerlink could not read",
        "The broker answered with an HTML page (or other non-JSON) where it should send JSON.",
        MEANING[UNEXPECTED],
        "Try again later; tell your administrator if it persists. Nothing was connected.",
        502,
    ),
    "configuration": Failure(
        "This broker is not set up correctly",
        "The broker rejected this brokerlink deployment's app credentials.",
        MEANING[CONFIGURATION],
        "Tell your administrator: the broker app's client ID or secret needs attention.",
        502,
    ),
    "missing_refresh_token": Failure(
        "The broker did not issue a refresh token",
        "The broker granted access but sent no refresh token, although it normally issues one.",
        "Without it brokerlink cannot keep the connection alive, so it did not connect the account.",
        TRY_AGAIN + " Make sure you grant every permission (offline access) the broker asks for.",
    ),
    "offline_access_denied": Failure(
        "The broker did not grant offline access",
        "The broker left offline_access out of what it granted, so its tokens end with your sign-in session there.",
        "brokerlink could not keep the connection alive, so it handed the tokens back and connected nothing.",
        TRY_AGAIN + " On the broker's consent page, allow brokerlink to stay connected (offline access).",
    ),
    "identity_missing": Failure(
        "The broker did not say which account this is",
        "The broker's account endpoint answered with JSON that names no account id.",
        "brokerlink handed the tokens back and connected nothing.",
        "Tell your administrator: the broker's heartbeat_path or identity setting needs attention.",
        502,
    ),
    "internal_error": Failure(
        "brokerlink could not finish connecting",
        "Something went wrong inside brokerlink after the broker issued tokens.",
        "brokerlink handed the tokens back and connected nothing.",
        TRY_AGAIN + " If it keeps happening, tell your administrator.",
        500,
    ),
    "different_account": Failure(
        "That is a different brokerage account",
        "You signed in to a different account at the broker than the one this connection belongs to.",
        "Reconnect keeps one account's connection alive; it never swaps accounts. Nothing changed.",
        "Reconnect again and pick the same account, or use Connect to add the other account.",
    ),
    "not_configured": Failure(
        "This broker is not configured",
        "This brokerlink deployment has no client credentials for the broker.",
        "Users cannot connect to it until an administrator adds them.",
        "Ask your administrator to add the broker's credentials in Admin › Broker apps.",
    ),
    "vault": Failure(
        "brokerlink cannot store tokens right now",
        "The token vault is not configured correctly on this server.",
        "brokerlink refused to store tokens unencrypted, so nothing was connected.",
        "Tell your administrator (TOKEN_ENCRYPTION_KEYS needs attention).",
        500,
    ),
}


class ConnectFailed(Exception):
    def __init__(self, code: str, *, detail: str = ""):
        super().__init__(code)
        self.code = code
        # A sanitized sentence from a BrokerError, shown beside the failure.
        self.detail = detail

    @property
    def failure(self) -> Failure:
        return FAILURES[self.code]


def failure_code_for(error: BrokerError) -> str:
    if error.error_code == broker_client.HTML_ERROR_CODE:
        return "unexpected_response"
    if error.category == AUTH:
        return "code_rejected"
    if error.category == NETWORK:
        return "broker_unreachable"
    if error.category in (BROKER_FAULT, RATE_LIMITED):
        return "broker_down"
    if error.category == CONFIGURATION:
        return "configuration"
    return "unexpected_response"


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
    from django.conf import settings

    from brokers.registry import SANDBOX_SLUG
    from brokers.services import broker_app_for, broker_app_is_configured

    if slug == SANDBOX_SLUG and not settings.SANDBOX_ENABLED:
        raise ConnectFailed("not_configured")
    app = broker_app_for(slug, environment)
    try:
        profile = broker_client.profile_for(slug, app.environment if app else "live")
    except UnknownBroker:
        raise ConnectFailed("not_configured") from None
    if app is None or not broker_app_is_configured(app, profile) or app.config_problem:
        raise ConnectFailed("not_configured")
    url = flow_begin(
        request, profile=profile, app=app, purpose=purpose, connection_id=connection_id, handoff=handoff,
        handoff_ref=handoff_ref,
    )
    logger.info("connections.connect.started", extra={"broker": slug, "purpose": purpose})
    return url


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
    _broker_answered(profile, now=now)
    logger.info(
        "connections.connect.done",
        extra={"connection_id": str(connection.pk), "broker": flow.slug, "kind": kind},
    )
    return ConnectOutcome(connection=connection, kind=kind)


def _broker_answered(profile: BrokerProfile, *, now) -> None:
    """The broker just issued tokens and answered the account call: it is up. Telling the
    circuit breaker keeps a stale open breaker from overriding a fresh reconnect."""
    from connections.engine.circuit import breaker_record

    breaker_record(broker_slug=profile.slug, successes=1, faults=0, policy=profile.circuit, now=now)


# --- disconnect ------------------------------------------------------------------------------


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
    app = connection.broker_app
    if app is None:
        outcome.reason = "this brokerlink deployment no longer has credentials for the broker."
        return _record_revocation(connection, actor, outcome)
    try:
        _revoke_at_broker(profile, app, tokens)
    except BrokerError as error:
        outcome.reason = f"{error.message}"
        _revoke_pending_keep(connection, tokens)
        outcome.kept_for_retry = True
        return _record_revocation(connection, actor, outcome, category=error.category)
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
    app = connection.broker_app
    if app is None:
        outcome.reason = "this brokerlink deployment no longer has credentials for the broker."
        return _record_revocation(connection, actor, outcome)
    try:
        _revoke_at_broker(profile, app, tokens)
    except BrokerError as error:
        outcome.reason = f"{error.message}"
        outcome.kept_for_retry = True
        return _record_revocation(connection, actor, outcome, category=error.category)
    Connection.objects.filter(pk=connection.pk).update(revoke_pending_sealed="")
    connection.revoke_pending_sealed = ""
    outcome.revoked = True
    return _record_revocation(connection, actor, outcome)


def connection_rename(connection: Connection, nickname: str) -> None:
    connection.nickname = " ".join(nickname.split())[:80]
    Connection.objects.filter(pk=connection.pk).update(nickname=connection.nickname, updated_at=timezone.now())
    _tell_open_pages(connection)


def _tell_open_pages(connection: Connection) -> None:
    """Open pages show the new name / drop the archived card (live updates; best effort)."""
    try:
        from connections.live import publish_connection_changed
    except ImportError:  # live updates not installed in this build
        return
    publish_connection_changed(connection)


def connection_archive(connection: Connection) -> bool:
    """Put a disconnected card away (off the dashboard). Only disconnected ones: False otherwise."""
    if connection.status != ConnectionStatus.DISCONNECTED:
        return False
    connection.archived_at = connection.archived_at or timezone.now()
    Connection.objects.filter(pk=connection.pk).update(archived_at=connection.archived_at)
    _tell_open_pages(connection)
    return True


def connection_remove(connection: Connection) -> bool:
    """Delete a disconnected connection with its history (and any token copy kept to revoke)."""
    if connection.status != ConnectionStatus.DISCONNECTED:
        return False
    logger.info("connections.removed", extra={"connection_id": str(connection.pk)})
    connection.delete()
    return True


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
