"""The authorization-code flow's browser side: state, PKCE, the authorize URL, the callback checks.

A pending flow lives in the user's session under its `state`: which broker and app, whether
it connects a new account or reconnects connection X, the PKCE verifier and when it began.
Taking it on the callback removes it (single use); a used state is remembered by hash so a
replay gets its own message. Flows expire after STATE_TTL_SECONDS.

A flow may be handed off: another app (partners' connect sessions) starts it with a
`handoff` name it registered here, and the broker's callback, which is always this app's URL
(the one registered at the broker), gives the finished flow back to that handler instead of
storing it for a signed-in user. connections never imports the apps that register.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from brokers.models import BrokerApp
from brokers.profile import BrokerProfile

STATE_TTL_SECONDS = 600
SESSION_KEY = "connections.oauth_flows"
USED_KEY = "connections.oauth_used_states"
MAX_PENDING = 10
MAX_USED = 20

PROTOCOL_PARAMS = frozenset(
    {"response_type", "client_id", "redirect_uri", "state", "scope", "code_challenge", "code_challenge_method"}
)

PURPOSE_CONNECT = "connect"
PURPOSE_RECONNECT = "reconnect"


class FlowError(Exception):
    """A callback that cannot go on. `code` names an entry of connections.services.failures.FAILURES."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass
class PendingFlow:
    state: str
    slug: str
    app_id: str
    environment: str
    purpose: str
    redirect_uri: str
    created_at: float
    code_verifier: str = ""
    connection_id: str = ""
    # A registered hand-off (see handoff_register) and its own reference (a connect session's id).
    handoff: str = ""
    handoff_ref: str = ""


class Handoff(Protocol):
    """Finishes flows another app started. `complete` may raise ConnectFailed or FlowError;
    the callback then calls `failed` with the failure's code."""

    def owns_browser(self, request) -> bool: ...

    def complete(self, request, *, flow: PendingFlow, code: str): ...

    def failed(self, request, *, flow: PendingFlow | None, code: str, detail: str = ""): ...


_HANDOFFS: dict[str, Handoff] = {}


def handoff_register(name: str, handler: Handoff) -> None:
    """Called once per process from the registering app's AppConfig.ready."""
    _HANDOFFS[name] = handler


def flow_handoff(request, state: str) -> Handoff | None:
    """Who finishes the callback for `state`: the hand-off its flow names, or, when the flow is
    gone (used, expired, forged) and nobody is signed in, a hand-off that owns this browser (so
    its person gets that app's page). None: an ordinary flow of a signed-in user."""
    raw = dict(request.session.get(SESSION_KEY, {})).get(state) if state else None
    if raw is not None:
        return _HANDOFFS.get(raw.get("handoff", ""))
    if not request.user.is_authenticated:
        return next((h for h in _HANDOFFS.values() if h.owns_browser(request)), None)
    return None


def _state_digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def flow_uses_pkce(profile: BrokerProfile) -> bool:
    """PKCE S256 on every authorization (RFC 9700 §2.1.1): brokers that do not know it ignore
    the extra parameters. Only a broker documented to reject it opts out (`pkce_opt_out`
    names the source), and never a public client: without a client secret the verifier is
    the only thing binding the code to brokerlink."""
    return not profile.pkce_opt_out or profile.token_rules.token_auth_method == "none"  # noqa: S105 - a method name


def authorize_params(profile: BrokerProfile) -> dict[str, str]:
    """Scope and OIDC parameters of the authorize URL.

    OpenID Connect Core 1.0 §11: a provider ignores offline_access unless the request has
    prompt=consent, and the tokens would then die with the user's login session there.
    """
    params: dict[str, str] = {}
    if profile.scopes:
        params["scope"] = profile.scope_separator.join(profile.scopes)
    if "openid" in profile.scopes and "offline_access" in profile.scopes:
        params["prompt"] = "consent"
    return params


def flow_begin(
    request,
    *,
    profile: BrokerProfile,
    app: BrokerApp,
    purpose: str = PURPOSE_CONNECT,
    connection_id: str = "",
    handoff: str = "",
    handoff_ref: str = "",
) -> str:
    """Record a pending flow in the session and return the broker's authorize URL."""
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64) if flow_uses_pkce(profile) else ""
    flow = PendingFlow(
        state=state,
        slug=profile.slug,
        app_id=str(app.pk),
        environment=app.environment,
        purpose=purpose,
        redirect_uri=app.effective_redirect_uri,
        created_at=time.time(),
        code_verifier=verifier,
        connection_id=connection_id,
        handoff=handoff,
        handoff_ref=handoff_ref,
    )
    pending = dict(request.session.get(SESSION_KEY, {}))
    pending[state] = asdict(flow)
    # Keep the newest few: abandoned tabs must not grow the session forever.
    newest = sorted(pending.items(), key=lambda item: item[1]["created_at"])[-MAX_PENDING:]
    request.session[SESSION_KEY] = dict(newest)

    # A profile's extra parameters first and never one of the protocol's own (state,
    # redirect_uri, PKCE…): those are brokerlink's alone, even when a YAML file names them.
    extra = {k: v for k, v in profile.extra_authorize_params.items() if k not in PROTOCOL_PARAMS}
    params = {
        **authorize_params(profile),
        **extra,
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": flow.redirect_uri,
        "state": state,
    }
    if verifier:
        params["code_challenge"] = create_s256_code_challenge(verifier)
        params["code_challenge_method"] = "S256"
    separator = "&" if "?" in profile.authorize_url else "?"
    return f"{profile.authorize_url}{separator}{urlencode(params)}"


def flow_take(request, *, slug: str, state: str) -> PendingFlow:
    """Remove and return the pending flow for `state`, or raise FlowError (forged/replayed/expired)."""
    if not state:
        raise FlowError("state_missing")
    used = list(request.session.get(USED_KEY, []))
    digest = _state_digest(state)
    pending = dict(request.session.get(SESSION_KEY, {}))
    raw = pending.pop(state, None)
    if raw is None:
        raise FlowError("state_replayed" if digest in used else "state_unknown")
    request.session[SESSION_KEY] = pending
    request.session[USED_KEY] = [*used, digest][-MAX_USED:]
    flow = PendingFlow(**raw)
    if flow.slug != slug:
        raise FlowError("state_unknown")
    if time.time() - flow.created_at > STATE_TTL_SECONDS:
        raise FlowError("state_expired")
    if not state_consume(digest):
        raise FlowError("state_replayed")
    return flow


def state_consume(digest: str) -> bool:
    """Mark a state spent, atomically, before any token request; False if someone already did.

    Rows older than the state lifetime can never match a live flow, so they are pruned here.
    """
    from datetime import timedelta

    from django.db import IntegrityError, transaction
    from django.utils import timezone

    from connections.models import OAuthStateUse

    now = timezone.now()
    OAuthStateUse.objects.filter(used_at__lt=now - timedelta(seconds=STATE_TTL_SECONDS * 2)).delete()
    try:
        with transaction.atomic():
            OAuthStateUse.objects.create(digest=digest, used_at=now)
    except IntegrityError:
        return False
    return True


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def issuer_check(profile: BrokerProfile, iss: str | None) -> None:
    """RFC 9207 mix-up defence.

    A callback without `iss` fails only where the broker advertises the parameter
    (authorization_response_iss_parameter_supported) or the operator declared it
    (`require_iss`). A callback with `iss` must match the declared issuer exactly, or,
    where none is declared, come from the authorization endpoint's origin.
    """
    if not iss:
        if profile.require_iss:
            raise FlowError("issuer_missing")
        return
    if profile.issuer:
        if iss != profile.issuer:
            raise FlowError("issuer_mismatch")
        return
    if _origin(iss) != _origin(profile.authorize_url):
        raise FlowError("issuer_mismatch")
