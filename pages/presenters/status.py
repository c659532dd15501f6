"""A connection's state in words: the badge, its one sentence and the next attempt."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.safestring import SafeString

from connections import errors
from connections.models import Connection, ConnectionStatus
from engine.monitoring import sweep_interval_seconds
from pages.presenters.phrases import STATES, ago_phrase, clock_phrase, duration_phrase, timed_html, until_phrase

# An access token with less life than this is not used while its refresh runs (engine.check).
REFRESH_AWAITED_TOKEN_LIFE = timedelta(seconds=15)


def next_attempt_at(connection: Connection, *, last_sweep: datetime | None, now: datetime) -> datetime:
    """When brokerlink really checks next: the first sweep tick at or after next_check_at
    (a connection due at 12:00:05 is checked by the sweep that starts after it, not at 12:00:05).
    A connection with no next check (one the sweep does not check: its status says why, and
    the status sentence is all a page shows of it) counts as due now."""
    due = max(connection.next_check_at or now, now)
    if last_sweep is None:
        return due
    interval = timedelta(seconds=sweep_interval_seconds())
    if due <= last_sweep:
        return max(now, last_sweep + interval)
    ticks = math.ceil((due - last_sweep) / interval)
    return last_sweep + ticks * interval


@dataclass
class StatusView:
    """What a person reads about a connection's state: the badge, one sentence, and (when
    brokerlink will try again) the time of the next attempt."""

    key: str
    label: str
    sentence: str
    group: str
    next_at: datetime | None = None
    next_text: str = ""
    # (phrase, moment, kind) of every time the sentence mentions; see timed_html.
    times: tuple = ()

    @property
    def sentence_html(self) -> SafeString:
        """The sentence with its "in 40 s" as a live countdown (static/js/live.js)."""
        return timed_html(self.sentence, self.times)


def _state(key: str, sentence: str, **kw) -> StatusView:
    label, group = STATES[key]
    return StatusView(key=key, label=label, sentence=sentence, group=group, **kw)


def checked_this_grant(connection: Connection) -> bool:
    last = connection.last_check_at
    return last is not None and (connection.grant_started_at is None or last >= connection.grant_started_at)


def last_check_passed(connection: Connection) -> bool:
    return (
        checked_this_grant(connection)
        and connection.last_success_at is not None
        and connection.last_success_at >= connection.last_check_at
    )


def is_slow(connection: Connection, profile) -> bool:
    from engine.conf import engine_setting

    if profile is None or connection.last_latency_ms is None:
        return False
    return connection.last_latency_ms > float(engine_setting("SLOW_FACTOR")) * max(1, profile.baseline_latency_ms)


def refresh_awaited(connection: Connection, *, now: datetime) -> bool:
    """A refresh went out and is not answered (running, or its outcome unknown) while the
    access token has run out: the connection waits for the broker (engine.refresh)."""
    return (
        connection.refresh_sent_at is not None
        and connection.access_expires_at is not None
        and connection.access_expires_at <= now + REFRESH_AWAITED_TOKEN_LIFE
    )


def status_for(connection: Connection, *, profile, now: datetime, last_sweep: datetime | None = None) -> StatusView:
    """The one place that turns a connection's data into its state words."""
    from engine.conf import engine_setting

    name = profile.name if profile else "The broker"
    status = connection.status
    if status == ConnectionStatus.DISCONNECTED:
        return _state("disconnected", "brokerlink holds no tokens for this account and no longer checks it.")
    if status == ConnectionStatus.NEEDS_REAUTH:
        return _state("needs_you", f"{name} no longer accepts this connection's sign-in. Reconnect to keep using it.")
    if status == ConnectionStatus.FAILED:
        return _state("needs_you", "brokerlink stopped checking this connection. Reconnect to start again.")
    if status == ConnectionStatus.CHECKING:
        return _state("checking", "Checking the connection now…")

    at = next_attempt_at(connection, last_sweep=last_sweep, now=now)
    if at > now + timedelta(seconds=1):
        when, clock = until_phrase(at, now=now), clock_phrase(at)
        timed = {"next_at": at, "next_text": when, "times": ((when, at, "countdown"), (clock, at, "clock"))}
        clock = f" (at {clock})"
    else:
        when, clock, timed = "any moment now", "", {}
    # An open circuit may hold a connection back before its first check: still true.
    if status == ConnectionStatus.BROKER_OUTAGE:
        return _state(
            "waiting",
            f"{name} is failing for everyone. Nothing to do: brokerlink checks again {when}{clock} "
            "and resumes by itself.",
            **timed,
        )
    if refresh_awaited(connection, now=now):
        return _state(
            "waiting",
            f"Waiting for {name} to answer a token refresh. Nothing to do: brokerlink does not send the refresh "
            "token again before the broker answers, so the grant is not spent twice, and resumes by itself.",
            **timed,
        )
    if not checked_this_grant(connection):
        return _state("checking", f"Waiting for the first check, {when}{clock}.", **timed)
    passed = last_check_passed(connection)
    category = connection.last_error_category
    if not passed and category == errors.RATE_LIMITED:
        return _state(
            "rate_limited",
            f"{name} asked brokerlink to slow down. Nothing to do: the next check is {when}{clock}.",
            **timed,
        )
    if status == ConnectionStatus.DEGRADED and not passed:
        if category == errors.CONFIGURATION:
            return _state(
                "needs_admin",
                f"{name} rejected this site's app credentials; an administrator has to fix them. "
                f"brokerlink checks again {when}{clock}.",
                **timed,
            )
        max_attempts = profile.backoff.max_attempts if profile else 0
        failures = max(connection.consecutive_failures, connection.retry_attempt)
        if max_attempts and connection.retry_attempt >= max_attempts:
            every = duration_phrase(float(engine_setting("SLOW_PROBE_SECONDS")))
            return _state(
                "retrying_slowly",
                f"{failures} checks in a row failed. brokerlink now checks every {every} and keeps the tokens "
                f"alive; nothing to do, it recovers by itself. Next check {when}{clock}.",
                **timed,
            )
        return _state(
            "retrying",
            f"The last check failed ({failures} in a row). Nothing to do yet: brokerlink tries again {when}{clock}.",
            **timed,
        )
    if passed:
        ago = ago_phrase(connection.last_check_at, now=now)
        times = ((ago, connection.last_check_at, "ago"),)
        if is_slow(connection, profile):
            return _state(
                "slow",
                f"The last check passed {ago} but took {connection.last_latency_ms:,} ms; "
                f"{name} usually answers in {profile.baseline_latency_ms:,} ms.",
                times=times,
            )
        return _state("connected", f"The last check passed {ago}.", times=times)
    return _state("checking", f"Waiting for the next check, {when}{clock}.", **timed)
