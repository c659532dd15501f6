"""Is a broker's refresh token single-use? Decided from what is declared and what was seen,
as pure functions (no I/O).

A broker may rotate refresh tokens and, on reuse of a spent one, revoke the whole grant
(RFC 6749 §10.4, RFC 9700 §4.14). Nobody has to declare that: every refresh token is treated
as single-use unless the broker is declared non-rotating *and* brokerlink has seen it keep
the same refresh token across refreshes. A refresh answer with a new refresh token marks the
broker rotating for good (brokers.services.broker_app_refresh_observed).
"""

from __future__ import annotations

from dataclasses import dataclass

# Refreshes that must have kept the same refresh token before a broker declared non-rotating
# is believed: one answer could come from a broker that rotates only now and then.
KEPT_REFRESHES_TO_TRUST = 2


@dataclass(frozen=True)
class RotationObserved:
    """What brokerlink has seen of one broker app's refresh answers."""

    rotation_seen: bool = False
    kept_count: int = 0


def refresh_token_single_use(*, declared_rotates: bool, observed: RotationObserved) -> bool:
    """Whether this broker's refresh tokens must be treated as possibly single-use: spent at
    most once, their refresh waited for the long deadline, never resent while an earlier
    request may still be processed."""
    if declared_rotates or observed.rotation_seen:
        return True
    return observed.kept_count < KEPT_REFRESHES_TO_TRUST


def refresh_answer_rotated(*, spent: str, answered: str | None) -> bool | None:
    """What one refresh answer says: True the broker rotated (a new refresh token), False it
    kept the same one (none in the answer means the old one stays valid, RFC 6749 §6), None
    nothing to learn (no refresh token was spent)."""
    if not spent:
        return None
    return bool(answered) and answered != spent
