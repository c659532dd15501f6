"""Webhook signatures are made by the `standardwebhooks` library and are the same bytes the spec
defines (and brokerlink sent before): HMAC-SHA256 over '<id>.<timestamp>.<body>', keyed by the
base64 part of a whsec_ secret, or by the raw bytes of a secret set before that format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from ops.webhooks import webhook_secret_new, webhook_sign

BODY = '{"type":"connection.broken","data":{"broker":"sandbox","note":"caf\u00e9"}}'.encode()


def spec_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_a_spec_secret_signs_what_a_receiver_verifies():
    secret = webhook_secret_new()
    timestamp = int(time.time())
    signature = webhook_sign(secret, "msg_1", timestamp, BODY)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    assert signature == spec_signature(key, "msg_1", timestamp, BODY)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    Webhook(secret).verify(BODY, headers)  # raises on a mismatch


def test_a_secret_from_before_the_spec_format_keys_by_its_bytes():
    assert webhook_sign("old-plain-secret", "msg_2", 1_700_000_000, BODY) == spec_signature(
        b"old-plain-secret", "msg_2", 1_700_000_000, BODY
    )


def test_another_body_does_not_verify():
    secret = webhook_secret_new()
    timestamp = int(time.time())
    headers = {
        "webhook-id": "msg_3",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhook_sign(secret, "msg_3", timestamp, BODY),
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers)
