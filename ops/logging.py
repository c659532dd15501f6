"""One redaction filter for every log record, and request/task ids on every record.

Tokens, client secrets, Authorization headers and OAuth `code`/`state` values are removed
from the message, its arguments, any structured `extra` fields, the exception text and the
stack before a handler sees them. Patterns cover the shapes these values travel in: query
strings, form bodies, JSON and Python reprs, and HTTP headers.

Redaction runs twice on purpose: when a record is created (`install_record_redaction`, so
loggers with their own handlers — uvicorn's, gunicorn's — are covered too) and as a handler
filter (which also sees the `extra` fields, set after the record is created).

The key `state` is reserved for the OAuth state parameter and always redacted; name other
states `circuit_state`, `status`, ….
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

from ops.client_address import client_address

REDACTED = "[redacted]"

# Names whose values are secret wherever they appear as `name=value`, `"name": "value"` or a field.
SENSITIVE_NAMES = (
    r"(?:[\w-]*?(?:access|refresh|id|bearer|auth|api|session|csrf)[_-]?token|token|[\w-]*secret"
    r"|password|passwd|api[_-]?key|code_verifier|code|state|authorization|cookie|sessionid|csrftoken)"
)
SENSITIVE_NAME_RE = re.compile(rf"(?i)^{SENSITIVE_NAMES}$")

PATTERNS = [
    # "Authorization": "Bearer xyz" / 'authorization': 'Basic xyz' / Authorization=Bearer xyz
    (
        re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:(bearer|basic|token)\s+)?[^\s'\",}]+"),
        lambda m: m.group(1) + (m.group(2) + " " if m.group(2) else "") + REDACTED,
    ),
    # A bare "Bearer xyz" anywhere.
    (re.compile(r"(?i)\b(bearer|basic)\s+(?!\[redacted\])[A-Za-z0-9\-._~+/]{8,}=*"), r"\1 " + REDACTED),
    # Header lines: "Cookie: a=b; c=d", "X-Api-Key: …"
    (
        re.compile(r"(?i)(?<![\w'\"-])((?:set-)?cookie|x-api-key|proxy-authorization)(\s*:\s*)[^\r\n]+"),
        r"\1\2" + REDACTED,
    ),
    # key=value in query strings, form bodies and log lines (not `status_code=500`).
    (re.compile(rf"(?i)(?<![\w.-])({SENSITIVE_NAMES})=(?!\[redacted\])[^&\s'\",;)}}]+"), r"\1=" + REDACTED),
    # The same, percent-encoded inside another parameter (a login page's `next=/authorize%3F…%26state%3D…`).
    (
        re.compile(
            rf"(?i)(?:(?<=%26)|(?<=%3F)|(?<=%2526)|(?<=%253F)|(?<![\w.%-]))({SENSITIVE_NAMES})(%3D|%253D)"
            rf"(?!\[redacted\])(?:(?!%26|%2526)[^&\s'\",;)}}])+"
        ),
        r"\1\2" + REDACTED,
    ),
    # "key": "value" in JSON and Python reprs.
    (re.compile(rf"(?i)(['\"]{SENSITIVE_NAMES}['\"]\s*:\s*)(['\"])(.*?)(?<!\\)\2"), r"\1\2" + REDACTED + r"\2"),
    # URL user-info (redis://:pw@host, postgres://user:pw@host): the password goes, the user stays.
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@'\"]*):(?!\[redacted\])[^\s/@'\"]+@"), r"\1:" + REDACTED + "@"),
]

STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id", "task_id", "client"}

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
task_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("task_id", default="-")
client_var: contextvars.ContextVar[str] = contextvars.ContextVar("client", default="-")
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def redact(text: str) -> str:
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(value, key: str = ""):
    """Redact a structured value, keeping its shape (dicts stay dicts for the JSON formatter)."""
    if key and SENSITIVE_NAME_RE.match(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return [redact_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    # Any other object (an exception, a request, a response): its text, redacted if needed.
    text = str(value)
    cleaned = redact(text)
    return cleaned if cleaned != text else value


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    record.msg = redact_value(record.msg) if not isinstance(record.msg, str) else redact(record.msg)
    if isinstance(record.args, dict):
        record.args = redact_value(record.args)
    elif record.args:
        # Argument by argument, so formatters that read `record.args` (uvicorn's access log) still work.
        record.args = tuple(redact_value(arg) for arg in record.args)
    for key, value in list(vars(record).items()):
        if key not in STANDARD_ATTRS and not key.startswith("_"):
            setattr(record, key, redact_value(value, key))
    if record.exc_info and record.exc_info[1] is not None:
        # Formatted tracebacks include exception messages; pre-render and redact them.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            redact_record(record)
        except Exception:  # redaction must never drop a record; fall back to the bare message
            record.msg, record.args, record.exc_info, record.exc_text = "[unredactable log record]", (), None, None
        return True


# Extras some libraries add that are not fields: uvicorn's coloured copy of the message.
TEXT_SKIP_FIELDS = {"request_id", "task_id", "client", "color_message"}


def _field_text(value) -> str | None:
    """The value as it appears after `key=`, or None for objects that are not data (a request)."""
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        import json

        value = json.dumps(list(value) if isinstance(value, (set, frozenset)) else value, default=str)
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        return None
    text = str(value)
    if not text or any(ch in text for ch in ' "=\\') or any(ord(ch) < 32 for ch in text):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    return text


class TextFormatter(logging.Formatter):
    """The text log line with the record's structured fields (`extra`) after the message, as
    `key=value` (quoted when needed), so `broker=alpaca status=503 latency_ms=812` is on the
    line as it is in the JSON format. Values are already redacted by RedactSecretsFilter."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = []
        for key, value in vars(record).items():
            if key in STANDARD_ATTRS or key in TEXT_SKIP_FIELDS or key.startswith("_"):
                continue
            text = _field_text(value)
            if text is not None:
                fields.append(f"{key}={text}")
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the fields
        return f"{head} {' '.join(fields)}{newline}{rest}"


class ContextFilter(logging.Filter):
    """Adds `request_id`, `task_id` and `client` (the client's address, ops.client_address) or "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.task_id = task_id_var.get()
        record.client = client_var.get()
        return True


_installed = False


def install_record_redaction() -> None:
    """Redact every record at creation, whichever logger and handler it goes to. Idempotent."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        try:
            return redact_record(record)
        except Exception:
            return record

    logging.setLogRecordFactory(factory)
    _installed = True


class RequestIdMiddleware:
    """Takes the load balancer's X-Request-ID (or makes one), puts it on every log record
    of the request and on the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        client_token = client_var.set(client_address(request) or "-")
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
            client_var.reset(client_token)
        response[REQUEST_ID_HEADER] = request_id
        return response


def celery_task_started(task_id=None, **kwargs) -> None:
    task_id_var.set(task_id or "-")


def celery_task_finished(**kwargs) -> None:
    task_id_var.set("-")
