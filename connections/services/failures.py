"""What the person sees when a connect or reconnect fails, and the failure a broker's error maps to."""

from __future__ import annotations

from dataclasses import dataclass

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
