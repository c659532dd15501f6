"""Single-flight token refresh that never spends a refresh token twice.

No transaction or row lock is held across the broker call. Instead the refresh is *claimed*
on the row with one conditional UPDATE (`refresh_claim_owner`, `refresh_claim_until`,
`refresh_sent_at`), the HTTP call runs outside any transaction, and a short transaction
stores the answer and clears the claim. Everyone else (the sweep, "Check now", "Refresh now",
admin, a second worker, a 401 retry) sees the claim and waits for its result or moves on;
none sends a second refresh.

Every refresh token is treated as possibly single-use unless the broker is declared
non-rotating and has been seen keeping it (brokers.rotation); every answer teaches that.
A single-use refresh waits for its answer for the refresh deadline (minutes, not the heartbeat
timeout); the sweep runs it off its batch path (engine.check).

A request that was sent but got no answer (timeout, connection dropped mid-answer, worker
killed) has an *unknown* outcome: the broker may have rotated the refresh token. The same
token is then not sent again until the broker has been seen answering a request sent after
the unknown one (engine.rotation): a stopped broker keeps queueing, so no fixed time is
enough. Then one deliberate resend, explained in the history.

The claim's writes on the row (take, let go, store the answer) are engine.refresh_claim.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.profile import BrokerProfile
from brokers.rotation import refresh_answer_rotated
from brokers.services import broker_app_refresh_observed, broker_app_refresh_single_use
from connections import errors
from connections.errors import BrokerError
from connections.models import Connection, ConnectionEvent
from connections.state import INACTIVE_STATUSES, connection_event_record
from engine.conf import engine_setting
from engine.dbretry import db_write_retried
from engine.refresh_claim import (
    refresh_answer_store,
    refresh_claim,
    refresh_claim_release,
    refresh_token_salvage,
)
from engine.refresh_history import refreshed_event_record
from engine.rotation import RESEND, RESEND_IN_GRACE, WAIT, unknown_refresh_action
from vault.crypto import VaultError, open_sealed
from vault.fields import aad_for

logger = logging.getLogger(__name__)

# Refresh at most once a day just to keep an idle refresh token alive.
IDLE_REFRESH_MIN_GAP = timedelta(days=1)
# How often a waiting caller looks at the row again.
POLL_SECONDS = 0.2
# A claim outlives the deadline by this share of it (at least 5 s), so only a dead claimant's
# claim expires: the claimant needs that long at most to store the answer or let go.
CLAIM_GRACE_SHARE = 0.25
CLAIM_GRACE_MIN_SECONDS = 5.0

# RefreshResult.reason values that mean "no refresh was made by this call".
IN_PROGRESS = "in_progress"
OUTCOME_UNKNOWN = "outcome_unknown"
# The grant was replaced or wiped while the refresh was out; its answer was not stored.
ANSWER_DROPPED = "answer_dropped"


@dataclass
class RefreshResult:
    connection: Connection
    refreshed: bool
    reason: str = ""


def connection_profile(connection: Connection) -> BrokerProfile:
    from connections.broker_client import profile_for

    return profile_for(connection.broker_slug, connection.environment)


def refresh_single_use(connection: Connection, profile: BrokerProfile) -> bool:
    """Whether this connection's refresh token is treated as possibly single-use."""
    return broker_app_refresh_single_use(connection.broker_app, profile)


def refresh_deadline_seconds(profile: BrokerProfile, *, single_use: bool = True) -> float:
    """How long a refresh waits for the broker's answer. A possibly single-use refresh token
    gets minutes: giving up early is what makes a second request with the same token likely."""
    if single_use:
        return float(profile.refresh_deadline_seconds or engine_setting("REFRESH_DEADLINE_SECONDS"))
    from connections.broker_client import default_timeout

    return default_timeout()[1]


def refresh_claimed(connection: Connection, *, now: datetime) -> bool:
    return bool(connection.refresh_claim_until and connection.refresh_claim_until > now)


def refresh_unknown_action(connection: Connection, profile: BrokerProfile, *, now: datetime) -> str:
    """engine.rotation's decision for this connection's unknown refresh, if it has one."""
    single_use = refresh_single_use(connection, profile)
    return unknown_refresh_action(
        sent_at=connection.refresh_sent_at,
        later_answer_at=connection.refresh_later_answer_at,
        claim_live=refresh_claimed(connection, now=now),
        single_use=single_use,
        reuse_grace_seconds=profile.refresh_reuse_grace_seconds,
        deadline_seconds=refresh_deadline_seconds(profile, single_use=single_use),
        now=now,
    )


def refresh_later_answer_record(connection_id, *, unknown_sent_at: datetime, request_sent_at: datetime) -> bool:
    """The broker answered a request sent at `request_sent_at`: if that was after the unknown
    refresh sent at `unknown_sent_at`, the unknown refresh has been processed or dropped."""
    if request_sent_at <= unknown_sent_at:
        return False
    return bool(
        db_write_retried(
            lambda: Connection.objects.filter(pk=connection_id, refresh_sent_at=unknown_sent_at).update(
                refresh_later_answer_at=request_sent_at
            )
        )
    )


def refresh_waiting_message(profile: BrokerProfile) -> str:
    """What a user and an operator read while a refresh's answer is awaited and the access
    token has run out."""
    return (
        f"Waiting for {profile.name} to answer a token refresh. brokerlink does not send the refresh token "
        "again before the broker answers, so the grant is not spent twice; the connection resumes by itself."
    )


def refresh_due(connection: Connection, profile: BrokerProfile, *, now: datetime) -> str:
    """Why this connection's token should be refreshed now ("" when it should not)."""
    if not connection.refresh_token_sealed:
        return ""
    if connection.access_expires_at is None or not connection.access_token_sealed:
        return "expiring" if not connection.access_token_sealed else ""
    issued = connection.last_refreshed_at or connection.grant_started_at
    lifetime = (connection.access_expires_at - issued).total_seconds() if issued else None
    if connection.access_expires_at - now <= timedelta(seconds=profile.refresh_margin(lifetime)):
        return "expiring"
    last = connection.last_refreshed_at or connection.grant_started_at
    if last is None or now - last < IDLE_REFRESH_MIN_GAP:
        return ""
    if now - last >= timedelta(days=engine_setting("IDLE_REFRESH_DAYS")):
        return "idle"
    # A refresh token whose own lifetime is a quarter gone from running out is refreshed while it
    # still works (brokers that issue a new refresh token on refresh extend it that way).
    ttl = profile.token_rules.refresh_ttl
    if (
        ttl
        and connection.refresh_expires_at
        and connection.refresh_expires_at != connection.reauth_deadline_at
        and connection.refresh_expires_at - now <= timedelta(seconds=ttl / 4)
    ):
        return "idle"
    return ""


def _unknown_message(profile: BrokerProfile) -> str:
    return (
        f"{profile.name} did not answer a token refresh, so it may or may not have used the refresh token. "
        f"To avoid spending it twice, brokerlink tries again after {profile.name} answers a later request; "
        "meanwhile the access token it has keeps being used."
    )


def _learn(connection: Connection, *, spent: str, token, usable: bool = True) -> None:
    """Teach the broker app what this answer showed about rotation (never fails the refresh).
    An unusable answer teaches only a rotation (it carried a new refresh token)."""
    answered = token.get("refresh_token") if isinstance(token, dict) else None
    rotated = refresh_answer_rotated(spent=spent, answered=answered if isinstance(answered, str) else None)
    if rotated is None or connection.broker_app is None or not (rotated or usable):
        return
    try:
        broker_app_refresh_observed(connection.broker_app, rotated=rotated)
    except Exception:  # noqa: BLE001 - the tokens are stored; the lesson waits for the next answer
        logger.exception("connections.refresh.learn_failed", extra={"connection_id": str(connection.pk)})


@sensitive_variables()
def connection_refresh(
    connection_id,
    *,
    reason: str,
    actor=None,
    force: bool = False,
    rejected_access_sealed: str | None = None,
    now: datetime | None = None,
    wait: float = 0.0,
) -> RefreshResult:
    """Refresh one connection's tokens if (still) needed, single-flight across processes.

    `force` refreshes even if the token is not near expiry (a manual "refresh now", or a 401 on
    the heartbeat). With `rejected_access_sealed`, a forced refresh is skipped when the stored
    access token is no longer the one the broker rejected: someone else already refreshed it.
    While another caller holds the refresh, this waits up to `wait` seconds for its result and
    otherwise returns reason IN_PROGRESS; while an unknown outcome is being waited out it
    returns OUTCOME_UNKNOWN. Raises BrokerError (needs_reauth=True for a dead grant).
    Configuration errors flag the broker app once. Never changes status: callers apply it.

    Three phases, no transaction or row lock held across the broker call: claim the refresh
    (one conditional UPDATE), send it once outside any transaction, store the answer in a
    short transaction that also clears the claim.
    """
    owner = f"refresh:{uuid.uuid4().hex[:16]}"
    # 1. Claim: read, decide, and take the refresh, or return why this call makes none.
    claim = _refresh_claim_or_skip(
        connection_id,
        owner=owner,
        reason=reason,
        actor=actor,
        force=force,
        rejected_access_sealed=rejected_access_sealed,
        now=now,
        wait=wait,
    )
    if isinstance(claim, RefreshResult):
        return claim
    # 2. Send, once, with the claim held and no transaction open.
    token = _refresh_send(claim, reason=reason, actor=actor)
    # 3. Store the answer (short transaction; clears the claim).
    return _refresh_answer_apply(claim, token, reason=reason, actor=actor)


@dataclass
class _RefreshClaim:
    """A refresh this call has claimed: what sending it and storing its answer need."""

    connection: Connection
    profile: BrokerProfile
    owner: str
    # engine.rotation's decision about an earlier refresh whose outcome is unknown.
    action: str
    single_use: bool
    deadline: float
    claimed_at: datetime
    refresh_token: str = field(repr=False)

    @property
    def retrying_unknown(self) -> bool:
        """This is the one deliberate resend after an unknown outcome."""
        return self.single_use and self.action in (RESEND, RESEND_IN_GRACE)


def _refresh_skip_reason(
    connection: Connection, profile: BrokerProfile, *, force: bool, rejected_access_sealed: str | None, now: datetime
) -> str:
    """Why no refresh is needed any more ("" when it still is)."""
    if connection.status in INACTIVE_STATUSES:
        return "inactive"
    if rejected_access_sealed is not None and _access_token_replaced(connection, rejected_access_sealed):
        return "already_refreshed"
    if not force and not refresh_due(connection, profile, now=now):
        return "fresh"
    return ""


@sensitive_variables()
def _access_token_replaced(connection: Connection, rejected_access_sealed: str) -> bool:
    """Whether the stored access token is no longer the one the broker rejected. Opened, not
    compared as ciphertext: a key rotation re-seals the same rejected token under a new key, and
    skipping its refresh would answer the 401 with that token again (and ask for a reconnect)."""
    stored_sealed = connection.access_token_sealed
    if stored_sealed == rejected_access_sealed:
        return False
    if not stored_sealed or not rejected_access_sealed:
        return True
    try:
        rejected = open_sealed(rejected_access_sealed, aad=aad_for(connection, "access_token"))
        return not hmac.compare_digest(connection.access_token.encode(), rejected.encode())
    except VaultError:
        return True  # as before: not known to be the same token


def _claim_until(claimed_at: datetime, deadline: float) -> datetime:
    """When a claim taken at `claimed_at` expires: the deadline plus its grace."""
    return claimed_at + timedelta(seconds=deadline + max(CLAIM_GRACE_MIN_SECONDS, deadline * CLAIM_GRACE_SHARE))


@sensitive_variables()
def _refresh_claim_or_skip(
    connection_id,
    *,
    owner: str,
    reason: str,
    actor,
    force: bool,
    rejected_access_sealed: str | None,
    now: datetime | None,
    wait: float,
) -> _RefreshClaim | RefreshResult:
    """Read the row, decide, and claim the refresh for `owner` (phase 1 of connection_refresh);
    a RefreshResult when this call makes no refresh. Raises (recorded) when it cannot be made."""
    started = time.monotonic()
    while True:
        connection = Connection.objects.select_related("broker_app").get(pk=connection_id)
        now = timezone.now() if now is None or time.monotonic() - started > 1 else now
        profile = connection_profile(connection)
        skip = _refresh_skip_reason(
            connection, profile, force=force, rejected_access_sealed=rejected_access_sealed, now=now
        )
        if skip:
            return RefreshResult(connection, False, skip)
        if refresh_claimed(connection, now=timezone.now()):
            if time.monotonic() - started < wait:
                time.sleep(POLL_SECONDS)
                force = False  # whoever holds it is refreshing: their result is what we wanted
                rejected_access_sealed = None
                continue
            return RefreshResult(connection, False, IN_PROGRESS)
        action = refresh_unknown_action(connection, profile, now=timezone.now())
        if action == WAIT:
            return RefreshResult(connection, False, OUTCOME_UNKNOWN)
        error = _refresh_blocker(connection, profile)
        if error is not None:
            _refresh_failed(connection, error, actor=actor, reason=reason)
        single_use = refresh_single_use(connection, profile)
        deadline = refresh_deadline_seconds(profile, single_use=single_use)
        claimed_at = timezone.now()
        try:
            refresh_token = connection.refresh_token
        except VaultError as exc:
            _refresh_failed(connection, _vault_error(), actor=actor, reason=reason, cause=exc)
        if refresh_claim(connection, owner=owner, now=claimed_at, until=_claim_until(claimed_at, deadline)):
            return _RefreshClaim(
                connection=connection,
                profile=profile,
                owner=owner,
                action=action,
                single_use=single_use,
                deadline=deadline,
                claimed_at=claimed_at,
                refresh_token=refresh_token,
            )
        # Someone claimed between our read and our UPDATE: look again.


def _resend_event_record(claim: _RefreshClaim) -> None:
    """The history line that explains the one deliberate resend after an unknown outcome."""
    profile = claim.profile
    if claim.action == RESEND_IN_GRACE:
        why = (
            f"{profile.name} accepts a rotated-away refresh token for {profile.refresh_reuse_grace_seconds} s, "
            "and that window is still open"
        )
    else:
        why = (
            f"{profile.name} has since answered a request sent after it, so that refresh was processed or "
            "dropped and its answer is lost"
        )
    connection_event_record(
        connection=claim.connection,
        kind=ConnectionEvent.Kind.REFRESH_FAILED,
        category=errors.NETWORK,
        message=(
            f"An earlier token refresh got no answer from {profile.name}. {why}; brokerlink is sending the "
            "refresh again, once. If the broker had already used the refresh token, it will ask for a reconnect."
        ),
    )


@sensitive_variables()
def _refresh_send(claim: _RefreshClaim, *, reason: str, actor):
    """Send the claimed refresh to the broker (phase 2 of connection_refresh) and return its
    answer. On failure, let go of the claim (keeping refresh_sent_at when the outcome is
    unknown) and raise the recorded error."""
    from connections.broker_client import token_refresh

    connection, profile, deadline = claim.connection, claim.profile, claim.deadline
    if claim.retrying_unknown:
        _resend_event_record(claim)
    logger.info(
        "connections.refresh.sent",
        extra={"connection_id": str(connection.pk), "reason": reason, "deadline_s": deadline, "resend": claim.action},
    )
    connect_timeout = min(5.0, deadline)
    try:
        return token_refresh(profile, connection.broker_app, claim.refresh_token, timeout=(connect_timeout, deadline))
    except BrokerError as error:
        unknown = error.maybe_sent and error.http_status is None and claim.single_use
        refresh_claim_release(connection.pk, owner=claim.owner, outcome_known=not unknown)
        if unknown:
            connection.refresh_sent_at = claim.claimed_at
            error = BrokerError(errors.NETWORK, _unknown_message(profile))
        elif error.needs_reauth and claim.retrying_unknown:
            error.message = (
                f"{profile.name} refused the refresh token. An earlier refresh that got no answer probably used "
                "it; reconnect to continue."
            )
        _refresh_failed(connection, error, actor=actor, reason=reason)
    except BaseException:
        # A bug or an interrupt after sending: the outcome is unknown, so keep refresh_sent_at.
        refresh_claim_release(connection.pk, owner=claim.owner, outcome_known=False)
        raise


@sensitive_variables()
def _refresh_answer_apply(claim: _RefreshClaim, token, *, reason: str, actor) -> RefreshResult:
    """Validate and store the broker's answer (phase 3 of connection_refresh). An unusable answer
    still has its rotated refresh token kept, and is raised recorded."""
    from connections.tokens import token_response_clean

    connection, profile, owner = claim.connection, claim.profile, claim.owner
    try:
        clean, notes = token_response_clean(profile, token)
    except BrokerError as error:
        refresh_token_salvage(connection.pk, owner=owner, spent=claim.refresh_token, profile=profile, token=token)
        _learn(connection, spent=claim.refresh_token, token=token, usable=False)
        _refresh_failed(connection, error, actor=actor, reason=reason)
    stored = refresh_answer_store(connection.pk, owner=owner, spent=claim.refresh_token, profile=profile, token=clean)
    if stored is None:  # reconnected or disconnected meanwhile: the row holds what that wrote
        return RefreshResult(Connection.objects.get(pk=connection.pk), False, ANSWER_DROPPED)
    connection = stored
    _learn(connection, spent=claim.refresh_token, token=clean)
    for note in notes:
        connection_event_record(connection=connection, kind=ConnectionEvent.Kind.REFRESHED, message=note)
    refreshed_event_record(connection, reason=reason, actor=actor)
    logger.info("connections.refresh.done", extra={"connection_id": str(connection.pk), "reason": reason})
    return RefreshResult(connection, True, reason)


def _refresh_blocker(connection: Connection, profile: BrokerProfile) -> BrokerError | None:
    if not connection.refresh_token_sealed:
        return BrokerError(
            errors.AUTH, f"{profile.name} gave no refresh token; reconnect to continue.", needs_reauth=True
        )
    if connection.broker_app is None:
        return BrokerError(errors.CONFIGURATION, f"No {profile.name} app is configured for this connection.")
    return None


def _vault_error() -> BrokerError:
    return BrokerError(
        errors.UNEXPECTED,
        "brokerlink cannot open this connection's stored tokens (encryption key missing or data damaged). "
        "An administrator must restore the key; reconnecting stores new tokens.",
    )


def _refresh_failed(connection: Connection, error: BrokerError, *, actor, reason: str, cause=None):
    """Record a failed refresh and raise it."""
    connection_event_record(
        connection=connection,
        kind=ConnectionEvent.Kind.REFRESH_FAILED,
        category=error.category,
        message=error.message,
        actor=actor,
    )
    if error.category == errors.CONFIGURATION and connection.broker_app is not None:
        from brokers.services import broker_app_flag_config_problem

        broker_app_flag_config_problem(connection.broker_app, error.message)
    logger.warning(
        "connections.refresh.failed",
        extra={
            "connection_id": str(connection.pk),
            "category": error.category,
            "reason": reason,
            "http_status": error.http_status,
        },
    )
    raise error from cause
