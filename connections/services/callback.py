"""The broker's callback: what the broker sent back is checked (the pending flow and its state,
the issuer, an error or a code), then the connect or reconnect it finishes is stored, or the
hand-off that started the flow (a partner's connect session) finishes it with its own page.

The view parses the request, calls `connection_callback_finish` and shows its `CallbackResult`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.views.decorators.debug import sensitive_variables

from brokers.registry import UnknownBroker
from connections import broker_client
from connections.oauth_flow import PURPOSE_RECONNECT, FlowError, PendingFlow, flow_handoff, flow_take, issuer_check
from connections.services.connect import ConnectOutcome, connection_authorize_complete, sandbox_off
from connections.services.failures import ConnectFailed

logger = logging.getLogger(__name__)


@dataclass
class CallbackResult:
    """What the callback shows; exactly one of these is set.

    sign_in   nobody is signed in and no hand-off owns the flow: sign in first
    response  a hand-off's own answer (its page or redirect), for its success or its failure
    outcome   the connection stored (connect or reconnect)
    failure   a code of FAILURES, with its `detail`; `connection_id` is the connection a failed
              reconnect was for (the failure page offers to reconnect it again)
    """

    sign_in: bool = False
    response: Any = None
    outcome: ConnectOutcome | None = None
    failure: str = ""
    detail: str = ""
    connection_id: str = ""


@sensitive_variables()  # the OAuth code, the state and the PKCE verifier
def _answer_check(flow: PendingFlow, params) -> None:
    """The broker's answer for a flow just taken: from the right issuer, neither an error nor empty."""
    try:
        profile = broker_client.profile_for(flow.slug, flow.environment)
    except UnknownBroker:
        raise FlowError("not_configured") from None
    issuer_check(profile, params.get("iss"))
    if params.get("error"):
        raise FlowError("access_denied" if params["error"] == "access_denied" else "authorization_error")
    if not params.get("code"):
        raise FlowError("code_missing")


@sensitive_variables()
def connection_callback_finish(request, *, slug: str, params) -> CallbackResult:
    """Finish the flow the callback's `state` names, for the signed-in user or for the hand-off
    that started it (which needs no signed-in user: its person has no brokerlink account).

    `params` is the callback's query (state, code, error, iss). The state is taken out of the
    session (single use) before anything else is trusted; failures come back as a
    CallbackResult, never raised.
    """
    state = params.get("state", "")
    handoff = flow_handoff(request, state)
    if handoff is None and not request.user.is_authenticated:
        return CallbackResult(sign_in=True)
    flow = None
    try:
        if sandbox_off(slug):
            raise FlowError("not_configured")
        flow = flow_take(request, slug=slug, state=state)
        _answer_check(flow, params)
        if handoff is not None:
            return CallbackResult(response=handoff.complete(request, flow=flow, code=params["code"]))
        outcome = connection_authorize_complete(user=request.user, flow=flow, code=params["code"])
    except (FlowError, ConnectFailed) as exc:
        detail = getattr(exc, "detail", "")
        if handoff is not None:
            logger.info("connections.connect.failed", extra={"broker": slug, "failure": exc.code})
            return CallbackResult(response=handoff.failed(request, flow=flow, code=exc.code, detail=detail))
        connection_id = flow.connection_id if flow and flow.purpose == PURPOSE_RECONNECT else ""
        return CallbackResult(failure=exc.code, detail=detail, connection_id=connection_id)
    return CallbackResult(outcome=outcome)
