import json
import logging

import pytest
from pythonjsonlogger.json import JsonFormatter

from ops.logging import ContextFilter, RedactSecretsFilter, redact, request_id_var

ACCESS = "at-9f8e7d6c5b4a39281706"
REFRESH = "rt-1a2b3c4d5e6f7a8b9c0d"
CODE = "authcode-5544332211"
STATE = "st8-abcdefabcdef0123"
SECRET = "cs-topsecret-0987654321"


def emit(logger_name="brokerlink.test", *, msg, args=(), extra=None, exc_info=None, fmt=None):
    """Send one record through a handler configured like production's console handler."""
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(fmt or logging.Formatter("%(message)s %(request_id)s"))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(msg, *args, extra=extra, exc_info=exc_info)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def assert_clean(text):
    for value in (ACCESS, REFRESH, CODE, STATE, SECRET):
        assert value not in text, f"{value} leaked in {text!r}"


def test_callback_url_code_and_state_are_removed_but_other_params_kept():
    text = emit(
        msg="connections.callback url=%s",
        args=(f"https://x.test/connections/callback/?code={CODE}&state={STATE}&broker=alpaca",),
    )
    assert_clean(text)
    assert "code=[redacted]" in text and "state=[redacted]" in text and "broker=alpaca" in text


def test_json_token_response_in_message_and_args():
    body = json.dumps({"access_token": ACCESS, "refresh_token": REFRESH, "token_type": "Bearer", "expires_in": 3600})
    text = emit(msg="token response %s", args=(body,))
    assert_clean(text)
    assert '"token_type": "Bearer"' in text and '"expires_in": 3600' in text


def test_authorization_headers_in_dict_reprs_and_header_lines():
    headers = {"Authorization": f"Bearer {ACCESS}", "Accept": "application/json"}
    text = emit(msg="outgoing request headers=%r", args=(headers,))
    text += emit(msg=f"raw\nAuthorization: Basic {SECRET}\nCookie: sessionid={SECRET}")
    assert_clean(text)
    assert "application/json" in text


def test_form_body_with_client_secret_and_refresh_token():
    text = emit(msg=f"POST /oauth/token grant_type=refresh_token&refresh_token={REFRESH}&client_secret={SECRET}")
    assert_clean(text)
    assert "grant_type=refresh_token" in text


def test_extra_fields_are_redacted_by_key_and_by_content():
    extra = {
        "access_token": ACCESS,
        "response": {"refresh_token": REFRESH, "status": 200},
        "url": f"/cb?code={CODE}",
        "status_code": 400,
    }
    text = emit(msg="connections.refresh.failed", extra=extra, fmt=JsonFormatter("%(message)s"))
    assert_clean(text)
    data = json.loads(text)
    assert data["response"]["status"] == 200 and data["status_code"] == 400


def test_exception_text_containing_a_token_is_redacted():
    try:
        raise ValueError(f"broker said invalid_grant for refresh_token={REFRESH} with Bearer {ACCESS}")
    except ValueError:
        import sys

        text = emit(msg="connections.refresh.crashed", exc_info=sys.exc_info())
    assert_clean(text)
    assert "ValueError" in text and "Traceback" in text


def test_exception_text_reaches_the_json_formatter():
    try:
        raise RuntimeError(f"GET /callback?code={CODE}")
    except RuntimeError:
        import sys

        text = emit(msg="boom", exc_info=sys.exc_info(), fmt=JsonFormatter("%(message)s"))
    assert_clean(text)
    assert "RuntimeError" in json.loads(text)["exc_info"]


def test_records_are_redacted_at_creation_even_without_the_filter(caplog):
    # The record factory covers loggers whose handlers we do not configure (uvicorn, gunicorn).
    logging.getLogger("uvicorn.access").warning(
        '%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET", f"/cb?code={CODE}", "1.1", 200
    )
    record = caplog.records[-1]
    assert CODE not in record.getMessage()
    assert record.args[4] == 200  # uvicorn's formatter unpacks args; their shape survives


def test_request_id_is_on_records():
    token = request_id_var.set("req-123")
    try:
        assert "req-123" in emit(msg="hello")
    finally:
        request_id_var.reset(token)


@pytest.mark.parametrize(
    "text",
    ["status_code=500", "token_type=Bearer", "connections.refresh.ok broker=alpaca", "circuit_state=open"],
)
def test_harmless_values_survive(text):
    assert redact(text) == text


def test_request_id_header_round_trip(client):
    response = client.get("/health/", HTTP_X_REQUEST_ID="lb-abc.123")
    assert response["X-Request-ID"] == "lb-abc.123"
    generated = client.get("/health/", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"]
    assert generated != "bad id with spaces" and len(generated) == 32


def test_captured_logs_fixture_sees_redacted_text(captured_logs):
    logging.getLogger("connections.oauth").info("exchange", extra={"refresh_token": REFRESH, "code": CODE})
    assert "exchange" in captured_logs.text
    assert REFRESH not in captured_logs and CODE not in captured_logs
