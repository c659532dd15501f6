"""The error taxonomy: every failure talking to a broker becomes one `BrokerError` with a
category, decided here and nowhere else.

Categories and what the engine does with them:
- network:       timeout, refused, DNS          -> retry with backoff
- broker_fault:  5xx                            -> retry with backoff; counts toward the circuit breaker
- rate_limited:  429 or a broker's own shape    -> wait Retry-After, then retry
- auth:          401 on an account call         -> one refresh attempt
                 invalid_grant (or the broker's equivalent) on refresh -> needs re-auth, no retries
- configuration: invalid_client                 -> an admin problem, flagged once per broker app
- unexpected:    HTML, bad JSON, shapes we do not know -> retry with backoff, reported

Messages are written for people and never include a token, secret or response body that
could carry one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NETWORK = "network"
BROKER_FAULT = "broker_fault"
RATE_LIMITED = "rate_limited"
AUTH = "auth"
CONFIGURATION = "configuration"
UNEXPECTED = "unexpected"

# Codes a token endpoint uses for "this grant is dead, the user must log in again".
DEAD_GRANT_CODES = {
    "invalid_grant",
    "unsupported_token_type",  # Schwab, for an expired refresh token
    "refresh_token_authentication_error",  # Schwab, nested
    "invalid_token",
    "access_denied",
}
CONFIG_CODES = {"invalid_client", "unauthorized_client", "invalid_scope"}

MEANING = {
    NETWORK: "brokerlink could not reach the broker (timeout, refused connection or DNS).",
    BROKER_FAULT: "The broker answered with a server error.",
    RATE_LIMITED: "The broker asked brokerlink to slow down.",
    AUTH: "The broker no longer accepts this connection's authorization.",
    CONFIGURATION: "The broker rejected this deployment's app credentials.",
    UNEXPECTED: "The broker answered with something brokerlink could not read.",
}

NEXT_STEP = {
    NETWORK: "Nothing to do: brokerlink retries automatically.",
    BROKER_FAULT: "Nothing to do: brokerlink retries automatically while the broker recovers.",
    RATE_LIMITED: "Nothing to do: brokerlink waits as long as the broker asked, then retries.",
    AUTH: "Reconnect the account to authorize brokerlink again.",
    CONFIGURATION: "Contact your brokerlink administrator: the broker app's credentials need attention.",
    UNEXPECTED: "brokerlink retries automatically; contact your administrator if it persists.",
}


@dataclass
class BrokerError(Exception):
    category: str
    message: str
    http_status: int | None = None
    # Set when the grant is dead (refresh rejected): no retry can help.
    needs_reauth: bool = False
    retry_after: float | None = None
    error_code: str = ""
    # False only when the request certainly never reached the broker (refused, connect
    # timeout): a refresh that failed that way can be sent again without spending anything.
    maybe_sent: bool = True

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return self.category in {NETWORK, BROKER_FAULT, RATE_LIMITED, UNEXPECTED} and not self.needs_reauth


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        from django.utils import timezone

        return max(0.0, (when - timezone.now()).total_seconds())


SAFE_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _error_code(body) -> str:
    """The OAuth `error` code from a JSON body, including Schwab's nested description."""
    if not isinstance(body, dict):
        return ""
    code = body.get("error") or body.get("code") or body.get("ErrorCode") or ""
    if isinstance(code, dict):
        code = code.get("code", "")
    errors = body.get("errors")
    if not code and isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = errors[0].get("id", "")
    code = str(code)
    # Echoed into messages and pages: anything but a short plain code (5,000 characters,
    # control characters, markup) is dropped and the message falls back to the HTTP status.
    return code if SAFE_ERROR_CODE.fullmatch(code) else ""


def _not_json(content_type: str) -> str:
    return "an HTML page" if "html" in content_type else "a response that is not JSON"


def classify_response(
    *,
    status: int,
    content_type: str,
    body,
    headers: dict | None = None,
    during: str,
    token_invalid_statuses: tuple[int, ...] = (401,),
    broker_name: str = "The broker",
) -> BrokerError | None:
    """Turn an HTTP answer into a BrokerError, or None when it is a success.

    `during` is "token" (code exchange or refresh), "refresh", "revoke" or "account".
    `body` is the parsed JSON, or None when the body was not JSON.
    The status decides first (success, redirect, 429, 5xx); any other answer is read by the
    error code in its body (`_answer_error`).
    """
    is_json = body is not None
    if 200 <= status < 300:
        if not is_json and during in {"token", "refresh", "account"}:
            return BrokerError(UNEXPECTED, f"{broker_name} sent {_not_json(content_type)} instead of JSON.", status)
        return None
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    error = _status_error(status, content_type, is_json, headers, broker_name)
    if error is not None:
        return error
    return _answer_error(status, content_type, body, during, token_invalid_statuses, broker_name)


def _status_error(status: int, content_type: str, is_json: bool, headers: dict, broker_name: str) -> BrokerError | None:
    """The error a redirect, a 429 or a 5xx is, whatever its body says; None for any other status."""
    if 300 <= status < 400:
        # Never followed: a redirect could lead anywhere (the outbound-URL policy), and a
        # heartbeat that lands on some 200 page proves nothing about the token.
        return BrokerError(
            UNEXPECTED,
            f"{broker_name} answered with a redirect (HTTP {status}); brokerlink does not follow them.",
            http_status=status,
        )
    if status == 429:
        return BrokerError(
            RATE_LIMITED,
            f"{broker_name} is rate limiting requests (HTTP 429).",
            http_status=status,
            retry_after=parse_retry_after(headers.get("retry-after")),
        )
    if status >= 500:
        if not is_json and "html" in content_type:
            return BrokerError(BROKER_FAULT, f"{broker_name} returned an HTML error page (HTTP {status}).", status)
        return BrokerError(BROKER_FAULT, f"{broker_name} had a server error (HTTP {status}).", http_status=status)
    return None


def _answer_error(
    status: int, content_type: str, body, during: str, token_invalid_statuses: tuple[int, ...], broker_name: str
) -> BrokerError:
    """The error any other answer (a 4xx, mostly) is, by the error code in its body and by what
    was asked."""
    is_json = body is not None
    code = _error_code(body)
    if code == "rate_limit_exceeded":
        return BrokerError(RATE_LIMITED, f"{broker_name} is rate limiting requests.", status, error_code=code)
    if code in CONFIG_CODES:
        return BrokerError(
            CONFIGURATION,
            f"{broker_name} rejected this deployment's client credentials ({code}).",
            http_status=status,
            error_code=code,
        )
    if during in {"token", "refresh"}:
        error = _dead_grant_error(status, body, code, broker_name)
        if error is not None:
            return error
    if during == "account" and status in token_invalid_statuses:
        return BrokerError(AUTH, f"{broker_name} rejected the access token (HTTP {status}).", status, error_code=code)
    if not is_json:
        return BrokerError(UNEXPECTED, f"{broker_name} sent {_not_json(content_type)} (HTTP {status}).", status)
    return BrokerError(UNEXPECTED, f"{broker_name} answered HTTP {status} ({code or 'no error code'}).", status)


def _dead_grant_error(status: int, body, code: str, broker_name: str) -> BrokerError | None:
    """A token endpoint's refusal of the grant (needs re-authentication), or None."""
    description = str(body.get("error_description", "")) if isinstance(body, dict) else ""
    nested_dead = any(c in description for c in DEAD_GRANT_CODES)
    if not (code in DEAD_GRANT_CODES or nested_dead or status in (400, 401)):
        return None
    if body is None and status not in (400, 401):
        return BrokerError(UNEXPECTED, f"{broker_name} sent an unreadable error (HTTP {status}).", status)
    return BrokerError(
        AUTH,
        f"{broker_name} no longer accepts this authorization ({code or f'HTTP {status}'}).",
        http_status=status,
        needs_reauth=True,
        error_code=code,
    )
