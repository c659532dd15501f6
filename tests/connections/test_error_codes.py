"""Security finding 6: a broker's error code is echoed only when it is a short plain code."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from brokers.profile import BrokerProfile, TokenRules
from connections import broker_client
from connections.errors import BrokerError
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
