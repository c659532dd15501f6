"""One way out to the network: every call brokerlink makes to a broker goes through here.

Each call has a timeout and brokerlink's User-Agent, and every failure comes back as one
`BrokerError` decided by `connections.errors.classify_response` (timeouts and refused
connections are category "network"). Exception messages and log lines carry the broker,
the kind of call, the HTTP status and the latency: never a token, secret, code or body.

Token calls use plain `requests` rather than authlib's OAuth2Session: classify_response
needs the raw status, content type and body, which authlib turns into its own exceptions.
authlib still provides PKCE (see connections.oauth_flow).

An HTML answer (a login page, a gateway error page) raises a BrokerError whose
`error_code` is HTML_ERROR_CODE, so callers can say "HTML instead of JSON" whatever the status.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from brokers.identity import IdentityError
from brokers.models import BrokerApp
from brokers.profile import BrokerProfile
from connections.errors import CONFIGURATION, NETWORK, UNEXPECTED, BrokerError, classify_response
from outbound.clients import outbound_session, refused_by_policy
from outbound.policy import OutboundRefused

logger = logging.getLogger(__name__)

HTML_ERROR_CODE = "html_response"
# A JSON answer to the identity call that names no account (see brokers.identity).
IDENTITY_MISSING_CODE = "identity_missing"
USER_AGENT = "brokerlink/0.1 (+https://github.com/brokerlink/brokerlink)"


def default_timeout() -> tuple[float, float]:
    """(connect, read) seconds; settings may shorten them (tests of a slow broker do)."""
    return (
        float(getattr(settings, "BROKER_CONNECT_TIMEOUT_SECONDS", 5)),
        float(getattr(settings, "BROKER_READ_TIMEOUT_SECONDS", 10)),
    )


def http_session() -> requests.Session:
    """A session under the outbound-URL policy: addresses checked and pinned, no proxies."""
    session = outbound_session()
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    return session


@dataclass
class BrokerResponse:
    status: int
    body: Any  # parsed JSON, or None when the body was not JSON
    latency_ms: int
    headers: dict
    # Raw bytes, for callers that pass the answer on (the API proxy).
    content: bytes = b""
    # With passthrough=True: the classified error of a non-2xx answer (None on success).
    error: BrokerError | None = None


def _parse_body(response: requests.Response) -> Any:
    content_type = response.headers.get("Content-Type", "")
    if "html" in content_type or not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the TCP connection was never established, so no byte of the request left
    (urllib3's NewConnectionError covers refused connections and DNS failures)."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    inner = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError):
        inner = inner.reason
    return isinstance(inner, NewConnectionError)


@sensitive_variables()
def broker_call(
    profile: BrokerProfile,
    method: str,
    url: str,
    *,
    during: str,
    timeout: float | tuple[float, float] | None = None,
    session: requests.Session | None = None,
    passthrough: bool = False,
    **kwargs: Any,
) -> BrokerResponse:
    """Send one request and return its parsed answer, or raise the classified BrokerError.

    `during` is "token", "refresh", "revoke" or "account" (see classify_response).
    With `passthrough`, an HTTP answer that is an error is returned (its classification in
    `.error`) instead of raised: the API proxy hands the broker's 404 or 400 on as it is.
    Network failures still raise.
    """
    timeout = timeout or default_timeout()
    session = session or http_session()
    started = time.monotonic()
    log_fields = {"broker": profile.slug, "during": during}
    try:
        response = session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except OutboundRefused as exc:
        raise _policy_refusal(profile, log_fields) from exc
    except requests.ConnectTimeout as exc:
        logger.warning("connections.broker.unreachable", extra={**log_fields, "error": "connect_timeout"})
        raise BrokerError(NETWORK, f"brokerlink could not reach {profile.name}.", maybe_sent=False) from exc
    except requests.Timeout as exc:
        seconds = timeout[1] if isinstance(timeout, tuple) else timeout
        logger.warning("connections.broker.timeout", extra=log_fields)
        raise BrokerError(NETWORK, f"{profile.name} did not answer within {seconds:g} seconds.") from exc
    except requests.ConnectionError as exc:
        if refused_by_policy(exc):
            raise _policy_refusal(profile, log_fields) from exc
        # Refused or unresolvable: nothing was sent. A connection dropped mid-answer may
        # have been processed, so it counts as "maybe sent" like a timeout.
        never_sent = _never_connected(exc)
        logger.warning("connections.broker.unreachable", extra={**log_fields, "sent": not never_sent})
        message = (
            f"brokerlink could not reach {profile.name}."
            if never_sent
            else f"{profile.name} closed the connection before answering."
        )
        raise BrokerError(NETWORK, message, maybe_sent=not never_sent) from exc
    except requests.RequestException as exc:
        logger.warning("connections.broker.request_failed", extra={**log_fields, "error": type(exc).__name__})
        raise BrokerError(NETWORK, f"The request to {profile.name} failed ({type(exc).__name__}).") from exc
    latency_ms = int((time.monotonic() - started) * 1000)
    body = _parse_body(response)
    headers = requests.structures.CaseInsensitiveDict(response.headers)
    error = classify_response(
        status=response.status_code,
        content_type=response.headers.get("Content-Type", ""),
        body=body,
        headers=headers,
        during=during,
        token_invalid_statuses=profile.token_invalid_statuses,
        broker_name=profile.name,
    )
    logger.info(
        "connections.broker.call",
        extra={**log_fields, "status": response.status_code, "latency_ms": latency_ms, "ok": error is None},
    )
    if error is not None:
        if body is None and "html" in response.headers.get("Content-Type", "") and not error.error_code:
            error.error_code = HTML_ERROR_CODE
        if not passthrough:
            raise error
    return BrokerResponse(
        status=response.status_code,
        body=body,
        latency_ms=latency_ms,
        headers=headers,
        content=response.content,
        error=error,
    )


def _policy_refusal(profile: BrokerProfile, log_fields: dict) -> BrokerError:
    logger.warning("connections.broker.outbound_refused", extra=log_fields)
    return BrokerError(
        CONFIGURATION,
        f"{profile.name}'s endpoint is not an address brokerlink may call (https to a public host only).",
        maybe_sent=False,  # refused before connecting
    )


@sensitive_variables()
def _client_auth(profile: BrokerProfile, app: BrokerApp, data: dict) -> tuple[dict, tuple[str, str] | None]:
    """Client authentication per the profile: HTTP Basic, form body, or a public client."""
    method = profile.token_rules.token_auth_method
    data = dict(data)
    if method == "client_secret_basic":
        # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
        return data, (quote(app.client_id, safe=""), quote(app.client_secret, safe=""))
    data["client_id"] = app.client_id
    if method == "client_secret_post":
        data["client_secret"] = app.client_secret
    return data, None


def _token_body(profile: BrokerProfile, response: BrokerResponse) -> dict:
    body = response.body
    if not isinstance(body, dict) or not body.get("access_token"):
        raise BrokerError(UNEXPECTED, f"{profile.name} answered without an access token.", http_status=response.status)
    return body


@sensitive_variables()
def token_exchange_code(
    profile: BrokerProfile,
    app: BrokerApp,
    *,
    code: str,
    redirect_uri: str,
    code_verifier: str = "",
    timeout: float | tuple[float, float] | None = None,
) -> dict:
    """Exchange an authorization code for the token response (a dict with access_token)."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if code_verifier:
        data["code_verifier"] = code_verifier
    data, auth = _client_auth(profile, app, data)
    response = broker_call(profile, "POST", profile.token_url, during="token", timeout=timeout, data=data, auth=auth)
    return _token_body(profile, response)


@sensitive_variables()
def token_refresh(
    profile: BrokerProfile, app: BrokerApp, refresh_token: str, *, timeout: float | tuple[float, float] | None = None
) -> dict:
    """Spend a refresh token; a dead grant raises BrokerError(AUTH, needs_reauth=True)."""
    data, auth = _client_auth(profile, app, {"grant_type": "refresh_token", "refresh_token": refresh_token})
    response = broker_call(profile, "POST", profile.token_url, during="refresh", timeout=timeout, data=data, auth=auth)
    return _token_body(profile, response)


@sensitive_variables()
def token_revoke(
    profile: BrokerProfile,
    app: BrokerApp,
    token: str,
    token_type_hint: str,
    *,
    timeout: float | tuple[float, float] | None = None,
) -> None:
    """RFC 7009 revocation of one token. Callers check `profile.can_revoke_single_user` first."""
    if not profile.revoke_url:
        raise BrokerError("configuration", f"{profile.name} has no revocation endpoint.")
    data, auth = _client_auth(profile, app, {"token": token, "token_type_hint": token_type_hint})
    broker_call(profile, "POST", profile.revoke_url, during="revoke", timeout=timeout, data=data, auth=auth)


@sensitive_variables()
def account_fetch(
    profile: BrokerProfile,
    environment: str,
    access_token: str,
    token_meta: dict | None = None,
    *,
    timeout: float | tuple[float, float] | None = None,
) -> BrokerResponse:
    """GET the heartbeat endpoint with the access token."""
    base = profile.hooks.api_base_url(profile, environment=environment, token_meta=token_meta or {})
    url = f"{base.rstrip('/')}{profile.heartbeat_path}"
    return broker_call(
        profile, "GET", url, during="account", timeout=timeout, headers={"Authorization": f"Bearer {access_token}"}
    )


@sensitive_variables()
def account_identity(
    profile: BrokerProfile,
    environment: str,
    access_token: str,
    token_meta: dict | None = None,
    *,
    timeout: float | tuple[float, float] | None = None,
) -> dict:
    """The account behind a token: {account_id, masked_number, label, paper} via the profile's hook."""
    response = account_fetch(profile, environment, access_token, token_meta, timeout=timeout)
    if response.body is None:
        raise BrokerError(
            UNEXPECTED,
            f"{profile.name} answered {profile.heartbeat_path} with something that is not JSON.",
            http_status=response.status,
            error_code=HTML_ERROR_CODE,
        )
    try:
        identity = profile.parse_identity(response.body)
    except IdentityError as exc:
        raise BrokerError(
            UNEXPECTED,
            f"{profile.name} answered {profile.heartbeat_path} with JSON that names no account: {exc}.",
            http_status=response.status,
            error_code=IDENTITY_MISSING_CODE,
        ) from exc
    if not identity.get("account_id"):
        raise BrokerError(
            UNEXPECTED,
            f"{profile.name} answered {profile.heartbeat_path} with JSON that names no account.",
            http_status=response.status,
            error_code=IDENTITY_MISSING_CODE,
        )
    return identity


def profile_for(slug: str, environment: str = "live") -> BrokerProfile:
    """The profile brokerlink talks to `slug` with, for `environment`.

    Brokers named in settings.SANDBOX_EMULATE_BROKERS ("*" = every real broker) are served
    by the sandbox emulating them: the contract suite runs brokerlink's real code that way.
    Raises brokers.registry.UnknownBroker.
    """
    from brokers.registry import SANDBOX_SLUG, get_profile, profile_for_sandbox_emulation

    emulated = getattr(settings, "SANDBOX_EMULATE_BROKERS", ()) or ()
    if slug != SANDBOX_SLUG and (slug in emulated or "*" in emulated):
        get_profile(slug)  # unknown slugs fail the same way either way
        return profile_for_sandbox_emulation(slug)
    return get_profile(slug).for_environment(environment)
