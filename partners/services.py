"""Partner apps' end users and connect sessions: the rules, as plain functions.

    session, url = connect_session_create(app=..., key_id=..., end_user={"id": "u-42"}, brokers=["sandbox"])
    session = connect_session_open(token, browser=request.session)    # first open only; then the cookie
    session = connect_session_for_browser(request.session)           # every later page of that browser
    connect_session_complete(session, connection) / connect_session_fail(session, code)
    end_user_disconnect_all(end_user=...)      # offboarding: revoke every grant (again, if unconfirmed)
    end_user_delete(end_user=...)              # then forget them (refused while a grant may be alive)

A session's URL token is 256 random bits; only its SHA-256 is stored. The first open spends
it and binds the session to that browser (a second secret in the browser's Django session,
its hash on the row); the browser is sent on to a URL without the token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from brokers.services import broker_catalog
from common.tunables import tunable
from connections.models import Connection, ConnectionStatus
from connections.services.disconnect import DisconnectOutcome, connection_disconnect, connection_revoke_retry
from partners.models import ConnectSession, EndUser, PartnerApp
from partners.signals import connect_session_event

logger = logging.getLogger(__name__)

DEFAULTS = {
    # How long a new session's link can be opened; and, once opened, how long that browser has
    # to finish (signing in at a broker can take a while).
    "SESSION_MINUTES": 30,
    # Sessions one service key may create per minute.
    "SESSIONS_PER_MINUTE": 30,
}
BROWSER_KEY = "partners.connect_session"


def partners_setting(name: str) -> int:
    return int(tunable("CONNECT", name, DEFAULTS))


class SessionRequestInvalid(Exception):
    """A connect-session request the API refuses: `status` is its HTTP status (400, 404, 409)."""

    def __init__(self, message: str, *, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SessionProblem(Exception):
    """Why a browser cannot use a session. `code` is one of PROBLEMS."""

    code: str


PROBLEMS = {
    "unknown": ("This link is not valid", "brokerlink knows no connect session for this link (it may be mistyped)."),
    "used": (
        "This link was already used",
        "Each connect link works once, in the browser that opened it first. Ask the app for a new link.",
    ),
    "expired": ("This link has expired", "Connect links work for a few minutes only. Ask the app for a new link."),
    "completed": ("This connection is done", "The account was linked; this session cannot be used again."),
    "disconnected": (
        "This connection was disconnected",
        "The app disconnected the account this link was to repair. Ask the app for a new link to connect it again.",
    ),
    "no_session": (
        "No connect session in this browser",
        "Open the link the app gave you in this browser, or ask the app for a new link.",
    ),
}


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- apps and end users --------------------------------------------------------------------


def partner_app_create(
    *, name: str, return_urls: list[str] | tuple = (), logo_url: str = "", brand_colour: str = ""
) -> PartnerApp:
    app = PartnerApp(name=name, return_urls=list(return_urls), logo_url=logo_url, brand_colour=brand_colour)
    app.full_clean()
    app.save()
    return app


def return_url_allowed(app: PartnerApp, url: str) -> bool:
    """Exact string match against the app's list: no prefix, no pattern, so no open redirect."""
    return bool(url) and url in (app.return_urls or [])


def _has_control_chars(value: str) -> bool:
    # NUL cannot be stored by PostgreSQL at all; other control characters make ids that look
    # alike but differ (a trailing newline), so neither is accepted.
    return any(ord(c) < 32 or ord(c) == 127 for c in value)


def end_user_id_valid(external_id: object) -> bool:
    """An app's id for an end user: 1 to 255 characters, no control characters."""
    return isinstance(external_id, str) and 0 < len(external_id) <= 255 and not _has_control_chars(external_id)


def _end_user_details_clean(email: str, display_name: str) -> tuple[str, str]:
    email, display_name = (email or "").strip(), (display_name or "").strip()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise SessionRequestInvalid("end_user.email is not a valid email address.") from None
        if len(email) > 254:
            raise SessionRequestInvalid("end_user.email must be at most 254 characters.")
    if len(display_name) > 255 or _has_control_chars(display_name):
        raise SessionRequestInvalid("end_user.display_name must be at most 255 characters, without control characters.")
    return email, display_name


def end_user_upsert(*, app: PartnerApp, external_id: str, email: str = "", display_name: str = "") -> EndUser:
    """The app's end user with this id, created on first sight; given details are kept up to
    date. Raises SessionRequestInvalid for an id or details brokerlink cannot keep."""
    external_id = external_id if isinstance(external_id, str) else ""
    if _has_control_chars(external_id) or not end_user_id_valid(external_id.strip()):
        raise SessionRequestInvalid("end_user.id must be 1 to 255 characters, without control characters.")
    external_id = external_id.strip()
    email, display_name = _end_user_details_clean(email, display_name)
    end_user, created = EndUser.objects.get_or_create(
        app=app, external_id=external_id, defaults={"email": email, "display_name": display_name}
    )
    given = {"email": email, "display_name": display_name}
    changed = {k: v for k, v in given.items() if v and getattr(end_user, k) != v}
    if changed and not created:
        for name, value in changed.items():
            setattr(end_user, name, value)
        end_user.save(update_fields=[*changed, "updated_at"])
    return end_user


def end_user_get(*, app: PartnerApp, external_id: str) -> EndUser | None:
    if not end_user_id_valid(external_id):
        return None  # no end user can have it (and PostgreSQL refuses NUL even in a query)
    return EndUser.objects.filter(app=app, external_id=external_id).first()


def app_connections(app_id):
    """Every connection of this app's end users (and nothing else)."""
    return Connection.objects.filter(end_user__app_id=app_id).select_related(
        "end_user", "end_user__app", "engine_state"
    )


# --- sessions ------------------------------------------------------------------------------


def offered_brokers(session: ConnectSession) -> list:
    """The catalog entries this session lets the end user connect (configured ones only)."""
    entries = [e for e in broker_catalog() if e.configured]
    if session.is_reconnect:
        return [e for e in entries if e.slug == session.connection.broker_slug]
    if session.brokers:
        entries = [e for e in entries if e.slug in session.brokers]
    return entries


def connect_session_create(
    *,
    app: PartnerApp,
    key_id=None,
    end_user: dict | None = None,
    brokers: list[str] | None = None,
    environment: str = "",
    return_url: str = "",
    connection_id=None,
    key_brokers: list[str] | tuple = (),
    now: datetime | None = None,
) -> tuple[ConnectSession, str]:
    """A new session and its URL (shown once). Raises SessionRequestInvalid.

    `key_brokers`: the brokers the creating key is limited to (empty: every broker). A
    session then offers only those, and a connection of another broker is not found."""
    now = now or timezone.now()
    if return_url and not return_url_allowed(app, return_url):
        raise SessionRequestInvalid("return_url is not one of this app's allowed return URLs (exact match).")
    if environment and environment not in ("paper", "live"):
        raise SessionRequestInvalid("environment must be 'paper' or 'live'.")
    connection = None
    if connection_id:
        connection = _reconnect_connection(app, connection_id=connection_id, end_user=end_user, key_brokers=key_brokers)
        owner = connection.end_user
        brokers, environment = [connection.broker_slug], connection.environment
    else:
        if not end_user or not str(end_user.get("id") or "").strip():
            raise SessionRequestInvalid("end_user.id is required (or connection_id, to reconnect).")
        known = {e.slug for e in broker_catalog() if e.configured}
        brokers = _session_brokers(brokers, known=known, key_brokers=key_brokers)
        owner = end_user_upsert(
            app=app,
            external_id=str(end_user["id"]),
            email=end_user.get("email") or "",
            display_name=end_user.get("display_name") or "",
        )
    token = secrets.token_urlsafe(32)
    session = ConnectSession.objects.create(
        app=app,
        end_user=owner,
        token_hash=_digest(token),
        key_id=key_id,
        brokers=list(brokers or []),
        environment=environment or "",
        return_url=return_url,
        connection=connection,
        expires_at=now + timedelta(minutes=partners_setting("SESSION_MINUTES")),
        created_at=now,
    )
    _announce(session, "created", f"For end user {owner.external_id}" + (" (reconnect)" if connection else ""))
    return session, f"{settings.SITE_URL}/connect/s/{token}/"


def _reconnect_connection(app: PartnerApp, *, connection_id, end_user: dict | None, key_brokers) -> Connection:
    """The connection a reconnect session is for: one of the app's (of the key's brokers, if the
    key is limited), not disconnected, and the named end user's if one is named. Raises
    SessionRequestInvalid."""
    visible = app_connections(app.pk)
    if key_brokers:
        visible = visible.filter(broker_slug__in=list(key_brokers))
    connection = visible.filter(pk=connection_id).first()
    if connection is None:
        raise SessionRequestInvalid("No such connection.", status=404)
    if connection.status == ConnectionStatus.DISCONNECTED:
        raise SessionRequestInvalid(
            "This connection was disconnected; create a new connect session for its end user instead.", status=409
        )
    if end_user and end_user.get("id") and end_user["id"] != connection.end_user.external_id:
        raise SessionRequestInvalid("The connection belongs to another end user.", status=404)
    return connection


def _session_brokers(brokers: list[str] | None, *, known: set[str], key_brokers) -> list[str] | None:
    """The brokers a new session offers: those asked for, all of them offered here (`known`) and
    allowed the key; a limited key's own brokers when none are asked for. Raises
    SessionRequestInvalid."""
    unknown = sorted(set(brokers or []) - known)
    if unknown:
        raise SessionRequestInvalid(f"Not offered by this brokerlink: {', '.join(unknown)}.")
    if key_brokers:
        outside = sorted(set(brokers or []) - set(key_brokers))
        if outside:
            raise SessionRequestInvalid(f"This key is not allowed these brokers: {', '.join(outside)}.")
        brokers = list(brokers or key_brokers)
    return brokers


def connect_session_open(token: str, *, browser, now: datetime | None = None) -> ConnectSession:
    """Spend the link's token and bind the session to this browser (`browser`: its Django
    session). Atomic: of two browsers opening one link, exactly one gets it. Raises SessionProblem."""
    now = now or timezone.now()
    secret = secrets.token_urlsafe(32)
    digest = _digest(token or "")
    opened = ConnectSession.objects.filter(
        token_hash=digest, status=ConnectSession.Status.CREATED, expires_at__gt=now
    ).update(
        status=ConnectSession.Status.OPENED,
        opened_at=now,
        browser_hash=_digest(secret),
        expires_at=now + timedelta(minutes=partners_setting("SESSION_MINUTES")),
    )
    session = ConnectSession.objects.select_related("app", "end_user").filter(token_hash=digest).first()
    if session is None:
        raise SessionProblem("unknown")
    if not opened:
        code = "used" if session.status != ConnectSession.Status.CREATED else "expired"
        _announce(session, "failed", f"Link opened again: {code}.")
        raise SessionProblem(code)
    browser[BROWSER_KEY] = {"id": str(session.pk), "secret": secret}
    _announce(session, "opened", "Opened in a browser.")
    return session


def connect_session_for_browser(browser, *, now: datetime | None = None) -> ConnectSession:
    """The session this browser opened, while it can still be used. Raises SessionProblem."""
    held = browser.get(BROWSER_KEY) or {}
    if not held.get("id") or not held.get("secret"):
        raise SessionProblem("no_session")
    session = (
        ConnectSession.objects.select_related("app", "end_user", "connection").filter(pk=held["id"]).first()
    )
    if session is None or not hmac.compare_digest(session.browser_hash, _digest(held["secret"])):
        raise SessionProblem("no_session")
    if session.status == ConnectSession.Status.COMPLETED:
        raise SessionProblem("completed")
    if session.expires_at <= (now or timezone.now()):
        raise SessionProblem("expired")
    if session.is_reconnect and session.connection.status == ConnectionStatus.DISCONNECTED:
        # Disconnected since the link was made: only a new connect session brings it back.
        raise SessionProblem("disconnected")
    return session


def connect_session_held(browser) -> bool:
    return bool((browser.get(BROWSER_KEY) or {}).get("id"))


def connect_session_complete(session: ConnectSession, connection: Connection, *, browser=None) -> bool:
    """Mark the session done with this connection (once). False if it was already done."""
    done = ConnectSession.objects.filter(pk=session.pk, status=ConnectSession.Status.OPENED).update(
        status=ConnectSession.Status.COMPLETED, completed_at=timezone.now(), result_connection_id=connection.pk
    )
    if browser is not None:
        browser.pop(BROWSER_KEY, None)
    if done:
        session.status = ConnectSession.Status.COMPLETED
        session.result_connection_id = connection.pk
        _announce(session, "completed", f"Connection {connection.pk} ({connection.broker_slug}).",
                  connection_id=connection.pk)
    return bool(done)


def connect_session_fail(session: ConnectSession, code: str) -> None:
    """A connect attempt failed: recorded and announced. The session stays usable until it
    expires, so the person can try again."""
    ConnectSession.objects.filter(pk=session.pk).update(last_failure=code[:32])
    _announce(session, "failed", f"Connect failed: {code}.", connection_id=session.connection_id)


def return_redirect_url(session: ConnectSession, **params: str) -> str:
    """The session's return_url with these parameters added to its query."""
    parts = urlsplit(session.return_url)
    query = parse_qsl(parts.query, keep_blank_values=True) + [(k, v) for k, v in params.items() if v]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _announce(session: ConnectSession, action: str, result: str, *, connection_id=None) -> None:
    logger.info(
        "partners.connect_session." + action,
        extra={"session_id": str(session.pk), "app_id": str(session.app_id)},
    )
    connect_session_event.send(
        sender=ConnectSession, session=session, action=action, result=result, connection_id=connection_id
    )


# --- offboarding ---------------------------------------------------------------------------


class EndUserBusy(Exception):
    """The end user still has connections that are not disconnected, or whose revocation at
    the broker was not confirmed (their grant may still be alive there)."""


def connection_offboard(connection: Connection) -> DisconnectOutcome:
    """Disconnect and revoke at the broker. Safe any number of times: on a connection already
    disconnected whose revocation the broker did not confirm, the revocation is tried again
    (never forgotten); otherwise a disconnected connection is left as it is."""
    if connection.status == ConnectionStatus.DISCONNECTED and connection.revoke_pending_sealed:
        return connection_revoke_retry(connection)
    return connection_disconnect(connection)


def end_user_disconnect_all(*, end_user: EndUser) -> list[tuple[Connection, DisconnectOutcome]]:
    """Disconnect (and revoke at the broker) every connection of this end user. Safe twice:
    a disconnected connection is left as it is, and an unconfirmed revocation is tried again.
    No transaction spans the broker calls."""
    results = []
    for connection in Connection.objects.filter(end_user=end_user).select_related("broker_app"):
        results.append((connection, connection_offboard(connection)))
    logger.info("partners.end_user.offboarded", extra={"end_user_id": str(end_user.pk), "connections": len(results)})
    return results


def end_user_delete(*, end_user: EndUser) -> int:
    """Forget the end user: their disconnected connections with their history, their sessions,
    and the end user. Refuses (EndUserBusy) while any connection is not disconnected or still
    holds tokens kept to retry a revocation the broker did not confirm: deleting those would
    leave a live grant at the broker that nobody can revoke any more. Returns how many
    connections went."""
    pk = end_user.pk
    try:
        with transaction.atomic():
            rows = list(
                Connection.objects.select_for_update()
                .filter(end_user=end_user)
                .values_list("pk", "status", "revoke_pending_sealed")
            )
            if any(status != ConnectionStatus.DISCONNECTED or pending for _, status, pending in rows):
                raise EndUserBusy()
            Connection.objects.filter(pk__in=[pk for pk, _, _ in rows]).delete()
            end_user.delete()
            count = len(rows)
    except (IntegrityError, ProtectedError):
        # A connect session still open in a browser finished meanwhile: a new connection of
        # this end user. Nothing was deleted (the instance keeps its id); the app offboards
        # again, then deletes.
        end_user.pk = pk
        raise EndUserBusy() from None
    logger.info("partners.end_user.deleted", extra={"connections": count})
    return count
