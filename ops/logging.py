"""One redaction filter for every log record.

Tokens, client secrets, Authorization headers and OAuth `code`/`state` values are removed
from the message, its arguments and any structured `extra` fields before a handler sees
them. Patterns cover the shapes these values travel in: query strings, form bodies, JSON,
and HTTP headers.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
SECRET_NAMES = r"(?:access_token|refresh_token|id_token|client_secret|code_verifier|code|state|token|password|secret|api_key)"

PATTERNS = [
    # Authorization: Bearer xyz / Basic xyz (header dumps, repr of dicts)
    (re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(bearer|basic)\s+[^\s'\",}]+"), r"\1\2 " + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*"), r"\1 " + REDACTED),
    # key=value in query strings and form bodies
    (re.compile(rf"(?i)([?&;\s]|^){SECRET_NAMES}=([^&\s'\"]+)"), lambda m: m.group(0).split("=")[0] + "=" + REDACTED),
    # "key": "value" in JSON and Python reprs
    (re.compile(rf"(?i)(['\"]{SECRET_NAMES}['\"]\s*:\s*)(['\"])(.*?)\2"), r"\1\2" + REDACTED + r"\2"),
]

STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact(text: str) -> str:
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = ()
        for key, value in list(vars(record).items()):
            if key in STANDARD_ATTRS:
                continue
            if isinstance(value, str):
                setattr(record, key, redact(value))
            elif isinstance(value, (dict, list, tuple)):
                setattr(record, key, redact(repr(value)))
        if record.exc_info and record.exc_info[1] is not None:
            # Formatted tracebacks include exception messages; pre-render and redact them.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
