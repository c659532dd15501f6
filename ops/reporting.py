"""Django error reports (debug pages, admin emails) without tokens, codes or states.

Locals of functions that handle tokens are hidden with `@sensitive_variables()`. What that
does not cover is removed here: query parameters with secret names (an OAuth callback's
`code` and `state`), and, as a last net, anything the log redaction recognises in the
rendered report (the request URL carries the query string too).
"""

import re

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from ops.logging import REDACTED, SENSITIVE_NAME_RE, redact


class RedactingReporterFilter(SafeExceptionReporterFilter):
    """Django's hidden settings plus every *_URL (DATABASE_URL, REDIS_URL, CELERY_BROKER_URL…)
    and cache/channel LOCATIONs, which carry passwords in their user-info."""

    hidden_settings = re.compile(
        r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|LOCATION|DSN", flags=re.I
    )

    def cleanse_setting(self, key, value):
        cleaned = super().cleanse_setting(key, value)
        return redact(cleaned) if isinstance(cleaned, str) else cleaned


class RedactingExceptionReporter(ExceptionReporter):
    def get_traceback_data(self):
        data = super().get_traceback_data()
        if "request_GET_items" in data:
            data["request_GET_items"] = [
                (key, REDACTED if SENSITIVE_NAME_RE.match(key) else value)
                for key, value in data["request_GET_items"]
            ]
        return data

    def get_traceback_html(self):
        return redact(str(super().get_traceback_html()))

    def get_traceback_text(self):
        return redact(str(super().get_traceback_text()))
