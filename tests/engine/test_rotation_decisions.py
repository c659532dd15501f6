"""The pure decisions behind refresh-token safety, as tables: is a broker's refresh token
single-use (brokers.rotation), and what to do with a refresh whose answer never arrived
(engine.rotation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from brokers.rotation import RotationObserved, refresh_answer_rotated, refresh_token_single_use
from engine.rotation import NOTHING_UNKNOWN, RESEND, RESEND_IN_GRACE, WAIT, unknown_refresh_action

NEVER_SEEN = RotationObserved()
ROTATED = RotationObserved(rotation_seen=True)
KEPT_ONCE = RotationObserved(kept_count=1)
KEPT_TWICE = RotationObserved(kept_count=2)
KEPT_OFTEN_THEN_ROTATED = RotationObserved(rotation_seen=True, kept_count=50)


@pytest.mark.parametrize(
    ("declared_rotates", "observed", "single_use"),
    [
        (False, NEVER_SEEN, True),  # the docs' minimal YAML: nothing declared, nothing seen yet
        (False, KEPT_ONCE, True),  # one answer is not proof
        (False, KEPT_TWICE, False),  # declared non-rotating and seen keeping it
        (False, ROTATED, True),  # a new refresh token in an answer: rotating for good
        (False, KEPT_OFTEN_THEN_ROTATED, True),  # rotates now and then: still single-use
        (True, NEVER_SEEN, True),  # a built-in profile's documented rotation stands
        (True, KEPT_TWICE, True),  # ... even if it kept the token a few times
        (True, ROTATED, True),
    ],
)
def test_refresh_token_single_use(declared_rotates, observed, single_use):
    assert refresh_token_single_use(declared_rotates=declared_rotates, observed=observed) is single_use


@pytest.mark.parametrize(
    ("spent", "answered", "rotated"),
    [
        ("rt-1", "rt-2", True),
        ("rt-1", "rt-1", False),  # the same token handed back
        ("rt-1", None, False),  # none returned: the old one stays valid (RFC 6749 §6)
        ("rt-1", "", False),
        ("", "rt-2", None),  # nothing was spent: nothing to learn
    ],
)
def test_refresh_answer_rotated(spent, answered, rotated):
    assert refresh_answer_rotated(spent=spent, answered=answered) is rotated


T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("case", "sent_at", "later_answer_at", "claim_live", "single_use", "grace", "now", "action"),
    [
        ("nothing sent", None, None, False, True, None, s(0), NOTHING_UNKNOWN),
        ("the sender still waits for its answer", s(0), None, True, True, None, s(100), WAIT),
        ("... even with a later answer seen", s(0), s(5), True, True, None, s(100), WAIT),
        ("a stalled broker: no time ends the wait", s(0), None, False, True, None, s(86_400), WAIT),
        ("the broker answered a request sent after it", s(0), s(30), False, True, None, s(31), RESEND),
        ("an answer to a request sent before it proves nothing", s(0), s(-5), False, True, None, s(300), WAIT),
        ("... nor one sent at the same instant", s(0), s(0), False, True, None, s(300), WAIT),
        ("a reusable refresh token is simply retried", s(0), None, False, False, None, s(11), RESEND),
        ("a grace open for the whole resend", s(0), None, False, True, 600, s(225), RESEND_IN_GRACE),
        ("a reuse grace that would close during the resend", s(0), None, False, True, 600, s(421), WAIT),
        ("a reuse grace shorter than a deadline changes nothing", s(0), None, False, True, 60, s(1), WAIT),
        ("evidence wins over an expired grace", s(0), s(40), False, True, 60, s(900), RESEND),
    ],
)
def test_unknown_refresh_action(case, sent_at, later_answer_at, claim_live, single_use, grace, now, action):
    assert (
        unknown_refresh_action(
            sent_at=sent_at,
            later_answer_at=later_answer_at,
            claim_live=claim_live,
            single_use=single_use,
            reuse_grace_seconds=grace,
            deadline_seconds=180,
            now=now,
        )
        == action
    ), case


@pytest.mark.parametrize(
    ("sent", "expires_in", "status", "key"),
    [
        (True, -30, "degraded", "waiting"),  # the access token ran out, the refresh not answered
        (True, 10, "degraded", "waiting"),  # too little left to use it
        (True, 600, "connected", "connected"),  # while it lives, nothing is said about the refresh
        (False, -30, "degraded", "retrying"),  # no refresh out: an ordinary failure
        (True, -30, "needs_reauth", "needs_you"),  # the grant is gone: that is what counts
    ],
)
def test_what_a_person_reads_while_a_refresh_is_not_answered(sent, expires_in, status, key):
    from brokers.registry import get_profile
    from connections.models import Connection
    from pages.presenters.status import status_for

    now = datetime.now(UTC)
    conn = Connection(
        broker_slug="sandbox",
        environment="live",
        status=status,
        access_expires_at=now + timedelta(seconds=expires_in),
        refresh_sent_at=now - timedelta(seconds=200) if sent else None,
        last_check_at=now - timedelta(seconds=5),
        last_success_at=now - timedelta(seconds=5) if status == "connected" else now - timedelta(seconds=300),
        next_check_at=now + timedelta(seconds=10),
        consecutive_failures=0 if status == "connected" else 1,
        retry_attempt=0 if status == "connected" else 1,
        last_error_category="" if status == "connected" else "network",
    )
    state = status_for(conn, profile=get_profile("sandbox"), now=now)
    assert state.key == key, state.sentence
    if key == "waiting":
        assert state.sentence.startswith("Waiting for Sandbox Broker to answer a token refresh")
