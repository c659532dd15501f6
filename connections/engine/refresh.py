"""Single-flight token refresh that never spends a refresh token twice.

No transaction or row lock is held across the broker call. Instead the refresh is *claimed*
on the row with one conditional UPDATE (`refresh_claim_owner`, `refresh_claim_until`,
`refresh_sent_at`), the HTTP call runs outside any transaction, and a short transaction
stores the answer and clears the claim. Everyone else (the sweep, "Check now", "Refresh now",
admin, a second worker, a 401 retry) sees the claim and waits for its result or moves on;
none sends a second refresh.

A request that was sent but got no answer (timeout, connection dropped mid-answer, worker
killed) has an *unknown* outcome: the broker may have rotated the refresh token. For rotating
refresh tokens brokerlink then waits a full refresh deadline before it sends the token again,
long enough for a stalled broker to have answered or dropped the first request, and says so in
the history. Rotating refreshes wait for their answer for the profile's refresh deadline
(minutes), not the heartbeat timeout; the sweep runs them off its batch path (engine.check).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from brokers.profile import BrokerProfile
from connections import errors
from connections.engine.conf import engine_setting
from connections.engine.dbretry import db_write_retried
from connections.errors import BrokerError
from connections.models import Connection, ConnectionEvent
from connections.state import INACTIVE_STATUSES, connection_event_record
from vault.crypto import VaultError

logger = logging.getLogger(__name__)

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
    "refresh_claim_owner",
    "refresh_claim_until",
    "refresh_sent_at",
    "updated_at",
]
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


@dataclass
class RefreshResult:
    connection: Connection
    refreshed: bool
    reason: str = ""


def connection_profile(connection: Connection) -> BrokerProfile:
    from connections.broker_client import profile_for

    return profile_for(connection.broker_slug, connection.environment)


def refresh_deadline_seconds(profile: BrokerProfile) -> float:
    """How long a refresh waits for the broker's answer. Rotating refresh tokens get minutes:
    giving up early is what makes a second request with the same token likely."""
    if profile.token_rules.rotates_refresh_token:
        return float(profile.refresh_deadline_seconds or engine_setting("REFRESH_DEADLINE_SECONDS"))
    from connections.broker_client import default_timeout

    return default_timeout()[1]


def refresh_claimed(connection: Connection, *, now: datetime) -> bool:
    return bool(connection.refresh_claim_until and connection.refresh_claim_until > now)


def refresh_resend_at(connection: Connection, profile: BrokerProfile) -> datetime | None:
    """When a refresh whose outcome is unknown may be sent again (None: nothing is unknown).

    The earlier request got a full deadline to be answered; one more deadline lets a broker
    that was stalled process or drop it before the same refresh token goes out again."""
    if connection.refresh_sent_at is None or not profile.token_rules.rotates_refresh_token:
        return None
    return connection.refresh_sent_at + timedelta(seconds=2 * refresh_deadline_seconds(profile))


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


def _claim(connection: Connection, *, owner: str, now: datetime, until: datetime) -> bool:
    """Take the refresh for `owner` if nobody holds it and the refresh token is still the one read."""
    return bool(
        Connection.objects.filter(pk=connection.pk, refresh_token_sealed=connection.refresh_token_sealed)
        .filter(Q(refresh_claim_until__isnull=True) | Q(refresh_claim_until__lte=now))
        .update(refresh_claim_owner=owner, refresh_claim_until=until, refresh_sent_at=now)
    )


def _release(connection_id, *, owner: str, outcome_known: bool) -> None:
    """Drop our claim. An unknown outcome keeps refresh_sent_at: it is what makes the next
    attempt wait (refresh_resend_at)."""
    fields = {"refresh_claim_owner": "", "refresh_claim_until": None}
    if outcome_known:
        fields["refresh_sent_at"] = None
    db_write_retried(lambda: Connection.objects.filter(pk=connection_id, refresh_claim_owner=owner).update(**fields))


@sensitive_variables()
def _store(connection_id, *, owner: str, spent_sealed: str, profile: BrokerProfile, token: dict) -> Connection:
    """Store a refresh answer in one short transaction and clear the claim.

    Stored even if our claim has expired meanwhile, as long as the refresh token we spent is
    still the stored one: the answer holds the only copy of a rotated refresh token."""
    from connections.tokens import connection_apply_token_response

    def write() -> Connection:
        with transaction.atomic():
            connection = (
                Connection.objects.select_for_update(of=("self",)).select_related("broker_app").get(pk=connection_id)
            )
            if connection.refresh_claim_owner != owner and connection.refresh_token_sealed != spent_sealed:
                logger.error("connections.refresh.answer_conflict", extra={"connection_id": str(connection_id)})
            connection_apply_token_response(
                connection=connection, profile=profile, token=token, now=timezone.now(), first_grant=False
            )
            connection.refresh_claim_owner, connection.refresh_claim_until, connection.refresh_sent_at = "", None, None
            connection.save(update_fields=TOKEN_FIELDS)
            return connection

    return db_write_retried(write)


@sensitive_variables()
def _salvage_refresh_token(connection_id, *, owner: str, profile: BrokerProfile, token: dict) -> None:
    """The answer is unusable but may carry a rotated refresh token: keep that, or the grant is lost."""
    from connections.tokens import TOKEN_PATTERN

    new_refresh = token.get("refresh_token") if isinstance(token, dict) else None
    if not isinstance(new_refresh, str) or not TOKEN_PATTERN.fullmatch(new_refresh):
        _release(connection_id, owner=owner, outcome_known=True)
        return

    def write() -> None:
        with transaction.atomic():
            connection = Connection.objects.select_for_update(of=("self",)).get(pk=connection_id)
            connection.refresh_token = new_refresh
            connection.refresh_claim_owner, connection.refresh_claim_until, connection.refresh_sent_at = "", None, None
            connection.save(update_fields=["refresh_token_sealed", *TOKEN_FIELDS[-4:]])

    db_write_retried(write)


def _unknown_message(profile: BrokerProfile, resend_at: datetime) -> str:
    return (
        f"{profile.name} did not answer a token refresh, so it may or may not have used the refresh token. "
        f"To avoid spending it twice, brokerlink tries again after {resend_at:%H:%M} UTC."
    )


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
    """
    from connections.broker_client import token_refresh
    from connections.tokens import token_response_clean

    started = time.monotonic()
    owner = f"refresh:{uuid.uuid4().hex[:16]}"
    while True:
        connection = Connection.objects.select_related("broker_app").get(pk=connection_id)
        now = timezone.now() if now is None or time.monotonic() - started > 1 else now
        profile = connection_profile(connection)
        if connection.status in INACTIVE_STATUSES:
            return RefreshResult(connection, False, "inactive")
        if rejected_access_sealed is not None and connection.access_token_sealed != rejected_access_sealed:
            return RefreshResult(connection, False, "already_refreshed")
        if not force and not refresh_due(connection, profile, now=now):
            return RefreshResult(connection, False, "fresh")
        if refresh_claimed(connection, now=timezone.now()):
            if time.monotonic() - started < wait:
                time.sleep(POLL_SECONDS)
                force = False  # whoever holds it is refreshing: their result is what we wanted
                rejected_access_sealed = None
                continue
            return RefreshResult(connection, False, IN_PROGRESS)
        resend_at = refresh_resend_at(connection, profile)
        if resend_at is not None and timezone.now() < resend_at:
            return RefreshResult(connection, False, OUTCOME_UNKNOWN)
        error = _refresh_blocker(connection, profile)
        if error is not None:
            _refresh_failed(connection, error, actor=actor, reason=reason)
        deadline = refresh_deadline_seconds(profile)
        claimed_at = timezone.now()
        until = claimed_at + timedelta(seconds=deadline + max(CLAIM_GRACE_MIN_SECONDS, deadline * CLAIM_GRACE_SHARE))
        retrying_unknown = connection.refresh_sent_at is not None and profile.token_rules.rotates_refresh_token
        try:
            refresh_token = connection.refresh_token
        except VaultError as exc:
            _refresh_failed(connection, _vault_error(), actor=actor, reason=reason, cause=exc)
        if _claim(connection, owner=owner, now=claimed_at, until=until):
            break
        # Someone claimed between our read and our UPDATE: look again.
    if retrying_unknown:
        connection_event_record(
            connection=connection,
            kind=ConnectionEvent.Kind.REFRESH_FAILED,
            category=errors.NETWORK,
            message=(
                f"An earlier token refresh got no answer from {profile.name}. brokerlink has waited long enough "
                "for it to be processed or dropped and is sending the refresh again; if the broker had already "
                "used the refresh token, it will ask for a reconnect."
            ),
        )
    logger.info(
        "connections.refresh.sent",
        extra={"connection_id": str(connection.pk), "reason": reason, "deadline_s": deadline},
    )
    connect_timeout = min(5.0, deadline)
    try:
        token = token_refresh(profile, connection.broker_app, refresh_token, timeout=(connect_timeout, deadline))
    except BrokerError as error:
        unknown = error.maybe_sent and error.http_status is None and profile.token_rules.rotates_refresh_token
        _release(connection.pk, owner=owner, outcome_known=not unknown)
        if unknown:
            connection.refresh_sent_at = claimed_at
            error = BrokerError(
                errors.NETWORK,
                _unknown_message(profile, refresh_resend_at(connection, profile)),
                retry_after=2 * deadline,
            )
        elif error.needs_reauth and retrying_unknown:
            error.message = (
                f"{profile.name} refused the refresh token. An earlier refresh that got no answer probably used "
                "it; reconnect to continue."
            )
        _refresh_failed(connection, error, actor=actor, reason=reason)
    except BaseException:
        # A bug or an interrupt after sending: the outcome is unknown, so keep refresh_sent_at.
        _release(connection.pk, owner=owner, outcome_known=False)
        raise
    try:
        clean, notes = token_response_clean(profile, token)
    except BrokerError as error:
        _salvage_refresh_token(connection.pk, owner=owner, profile=profile, token=token)
        _refresh_failed(connection, error, actor=actor, reason=reason)
    connection = _store(
        connection.pk, owner=owner, spent_sealed=connection.refresh_token_sealed, profile=profile, token=clean
    )
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


ROUTINE_PREFIX = "Token refreshed automatically"


def refreshed_event_record(connection: Connection, *, reason: str, actor=None) -> None:
    """One history line per refresh that a person asked for or that had a reason worth reading;
    routine refreshes ahead of expiry update one summary line while nothing else happened."""
    now = timezone.now()
    if reason != "expiring" or actor is not None:
        connection_event_record(
            connection=connection,
            kind=ConnectionEvent.Kind.REFRESHED,
            message=f"Token refreshed ({reason}).",
            actor=actor,
        )
        return
    last = ConnectionEvent.objects.filter(connection=connection).order_by("-created_at", "-pk").first()
    if (
        last is not None
        and last.kind == ConnectionEvent.Kind.REFRESHED
        and last.message.startswith(ROUTINE_PREFIX)
        and now - last.created_at < timedelta(days=1)
    ):
        count = _routine_count(last.message) + 1
        last.message = f"{ROUTINE_PREFIX} {count} times, last at {now:%H:%M} UTC."
        last.save(update_fields=["message"])
        return
    connection_event_record(
        connection=connection,
        kind=ConnectionEvent.Kind.REFRESHED,
        message=f"{ROUTINE_PREFIX} before it expired ({now:%H:%M} UTC).",
    )


def _routine_count(message: str) -> int:
    words = message[len(ROUTINE_PREFIX) :].split()
    return int(words[0]) if words and words[0].isdigit() else 1
