"""Security finding 6: a broker's error code is echoed only when it is a short plain code."""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from brokers.profile import BrokerProfile, TokenRules
from connections import broker_client, errors
from connections.errors import (
    AUTH,
    BROKER_FAULT,
    CONFIGURATION,
    RATE_LIMITED,
    UNEXPECTED,
    BrokerError,
    classify_response,
)
from engine.heartbeat_client import HeartbeatRequest, heartbeats_run

PROFILE = BrokerProfile(slug="acme", name="Acme", authorize_url="", token_url="", api_base_urls={},
                        heartbeat_path="/", token_rules=TokenRules())


@pytest.fixture
def broker_answering():
    servers = []

    def start(status: int, body: dict) -> str:
        payload = json.dumps(body).encode()

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _answer  # noqa: N815

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("code", ["x" * 5000, "bad\u0007code\r\n<script>alert(1)</script>", "has space"])
def test_hostile_error_codes_become_a_generic_phrase(broker_answering, code):
    root = broker_answering(400, {"error": code})
    with pytest.raises(BrokerError) as info:
        broker_client.broker_call(PROFILE, "POST", f"{root}/token", during="token")
    assert code not in info.value.message and len(info.value.message) < 200
    assert "HTTP 400" in info.value.message and info.value.error_code == ""

    (result,) = heartbeats_run([HeartbeatRequest(key=1, url=f"{root}/v1/account", access_token="t")])
    assert result.error is not None and code not in result.error.message and len(result.error.message) < 200


def test_a_plain_code_is_still_named(broker_answering):
    root = broker_answering(400, {"error": "invalid_grant"})
    with pytest.raises(BrokerError) as info:
        broker_client.broker_call(PROFILE, "POST", f"{root}/token", during="refresh")
    assert "(invalid_grant)" in info.value.message and info.value.error_code == "invalid_grant"


# --- the taxonomy, answer by answer (connections.errors.classify_response) ------------------


def classified(status, body, *, during="account", content_type="application/json", headers=None, invalid=(401,)):
    return classify_response(status=status, content_type=content_type, body=body, headers=headers, during=during,
                             token_invalid_statuses=invalid, broker_name="Acme")


@pytest.mark.parametrize(
    ("answer", "category", "needs_reauth", "message"),
    [
        (classified(200, None, content_type="text/html"), UNEXPECTED, False, "Acme sent an HTML page instead of JSON."),
        (classified(302, {}), UNEXPECTED, False,
         "Acme answered with a redirect (HTTP 302); brokerlink does not follow them."),
        (classified(429, {}, headers={"Retry-After": "7"}), RATE_LIMITED, False,
         "Acme is rate limiting requests (HTTP 429)."),
        (classified(503, None, content_type="text/html"), BROKER_FAULT, False,
         "Acme returned an HTML error page (HTTP 503)."),
        (classified(500, {}), BROKER_FAULT, False, "Acme had a server error (HTTP 500)."),
        (classified(400, {"error": "rate_limit_exceeded"}), RATE_LIMITED, False, "Acme is rate limiting requests."),
        (classified(401, {"error": "invalid_client"}, during="refresh"), CONFIGURATION, False,
         "Acme rejected this deployment's client credentials (invalid_client)."),
        (classified(400, {"error": "invalid_grant"}, during="refresh"), AUTH, True,
         "Acme no longer accepts this authorization (invalid_grant)."),
        (classified(403, {"error": "x", "error_description": "refresh_token_authentication_error"}, during="token"),
         AUTH, True, "Acme no longer accepts this authorization (x)."),
        (classified(401, None, during="refresh", content_type="text/plain"), AUTH, True,
         "Acme no longer accepts this authorization (HTTP 401)."),
        (classified(403, {"error": "access_denied"}, during="token"), AUTH, True,
         "Acme no longer accepts this authorization (access_denied)."),
        (classified(403, {}, during="account", invalid=(401, 403)), AUTH, False,
         "Acme rejected the access token (HTTP 403)."),
        (classified(403, {}, during="revoke"), UNEXPECTED, False, "Acme answered HTTP 403 (no error code)."),
        (classified(404, None, content_type="text/html"), UNEXPECTED, False, "Acme sent an HTML page (HTTP 404)."),
    ],
)
def test_each_answer_gets_its_category(answer, category, needs_reauth, message):
    assert (answer.category, answer.needs_reauth, answer.message) == (category, needs_reauth, message)


def test_a_success_is_no_error_and_a_429_says_how_long_to_wait():
    assert classified(200, {}) is None and classified(204, None, during="revoke") is None
    assert classified(429, {}, headers={"Retry-After": "7"}).retry_after == 7.0


def plain_mccabe(function) -> int:
    """McCabe's count as the textbook has it: 1 + every branch, loop, handler, conditional
    expression, comprehension condition and boolean operand (ruff's C901 counts fewer)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    count = 1
    for node in ast.walk(tree):
        if isinstance(node, ast.If | ast.IfExp | ast.For | ast.While | ast.ExceptHandler | ast.Assert | ast.match_case):
            count += 1
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            count += 1 + len(node.ifs)
    return count


def test_the_classification_reads_in_pieces_well_under_the_complexity_limit():
    """Each piece stays clearly under pyproject's max-complexity of 20 by the plain count too."""
    counts = {f.__name__: plain_mccabe(f) for f in errors_functions()}
    assert counts and max(counts.values()) < 15, counts


def errors_functions():
    return [f for f in vars(errors).values() if inspect.isfunction(f) and f.__module__ == errors.__name__]
