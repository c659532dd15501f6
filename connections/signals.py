"""Signals this app sends for the apps built on it, so the import direction stays theirs ->
connections. Sent synchronously, inside the caller's transaction (unlike the outbox's, which
go out after commit)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent with `profile` (brokers.profile.BrokerProfile) and `now` when a broker has just issued
# tokens and answered the account call on connect or reconnect: the broker is up. The engine's
# circuit breaker records it, so a stale open breaker does not override a fresh reconnect.
broker_answered = Signal()
