"""Per-connection retry delays, chosen per broker (BrokerProfile.backoff)."""

from __future__ import annotations

import random

from brokers.profile import BackoffPolicy

# Never retry sooner than this, even when full jitter draws a number near zero.
MIN_DELAY_SECONDS = 5.0


def backoff_delay(policy: BackoffPolicy, attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1 = first retry).

    exponential: full jitter, uniform(0, min(cap, base * 2**(attempt-1))) (AWS "Exponential
    Backoff and Jitter"); linear: min(cap, base * attempt); fixed: base.
    """
    attempt = max(1, attempt)
    base, cap = float(policy.base_seconds), float(policy.cap_seconds)
    if policy.kind == "fixed":
        delay = min(base, cap)
    elif policy.kind == "linear":
        delay = min(cap, base * attempt)
    else:
        ceiling = min(cap, base * 2 ** min(attempt - 1, 30))
        delay = (rng or random).uniform(0, ceiling)
    return max(MIN_DELAY_SECONDS, delay)


def attempts_exhausted(policy: BackoffPolicy, attempt: int) -> bool:
    """True when `attempt` failures in a row used up the broker's retry budget."""
    return attempt >= policy.max_attempts
