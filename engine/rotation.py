"""What to do with a refresh request whose answer never arrived, as a pure function (no I/O).

Whether a refresh token is single-use at all is brokers.rotation's decision; engine.refresh
applies both. tests/engine/test_rotation_decisions.py is their table.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# What to do about a refresh whose outcome is unknown (sent, never answered).
NOTHING_UNKNOWN = "none"
WAIT = "wait"  # the broker may still process it: send nothing with this refresh token
RESEND = "resend"  # processed or dropped for good: one deliberate resend
RESEND_IN_GRACE = "resend_in_grace"  # within the broker's declared reuse grace: a resend is answered


def unknown_refresh_action(
    *,
    sent_at: datetime | None,
    later_answer_at: datetime | None,
    claim_live: bool,
    single_use: bool,
    reuse_grace_seconds: float | None,
    deadline_seconds: float,
    now: datetime,
) -> str:
    """What to do with a refresh request that went out and whose answer never arrived.

    `later_answer_at` is when a request the broker answered was sent, if it was sent after
    `sent_at` (a heartbeat, or any call that spends nothing): only then has the unknown request
    been processed or dropped. No fixed time ends the wait: a stopped broker keeps queueing.
    A broker's reuse grace (the previous refresh token stays usable that long after a rotation)
    makes a resend safe while it reaches the broker within the grace of the first send.
    """
    if sent_at is None or claim_live:
        return NOTHING_UNKNOWN if sent_at is None else WAIT
    if not single_use:
        return RESEND  # a refresh token that stays valid: retrying spends nothing
    if later_answer_at is not None and later_answer_at > sent_at:
        return RESEND
    if reuse_grace_seconds and now + timedelta(seconds=deadline_seconds) <= sent_at + timedelta(
        seconds=reuse_grace_seconds
    ):
        return RESEND_IN_GRACE
    return WAIT
