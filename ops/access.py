"""Who may call the operator endpoints: staff with a session, or a bearer token.

Monitors and Prometheus authenticate with a token from the environment; a person looking
at the same pages in a browser uses their staff session.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest


def bearer_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def bearer_matches(request: HttpRequest, expected: str) -> bool:
    """True when the request carries `Authorization: Bearer <expected>`; never for an empty setting."""
    given = bearer_token(request)
    return bool(expected) and bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def is_staff(request: HttpRequest) -> bool:
    """Active staff whose session passed a second factor (common.staff)."""
    from common.staff import staff_verified

    return staff_verified(request)
