"""Engine bookkeeping shared by every worker: circuit breakers, sweep runs, uptime rollups
and the notification log (which makes every alert happen once per incident)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

__all__ = ["CircuitBreaker", "Notification", "SweepRun", "UptimeRollup"]


class CircuitBreaker(models.Model):
    """One per broker slug, in the database so every worker sees the same state."""

    class State(models.TextChoices):
        CLOSED = "closed", "Closed"
        OPEN = "open", "Open"
        HALF_OPEN = "half_open", "Half-open"

    broker_slug = models.SlugField(max_length=64, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.CLOSED)
    # Consecutive broker_fault/network failures across the broker's connections.
    failure_count = models.PositiveIntegerField(default=0)
    # Failed half-open probes in a row: each doubles the cool-down (capped), so a broker that
    # stays down costs a few probes an hour, not one a minute.
    probe_failures = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    next_probe_at = models.DateTimeField(null=True, blank=True)
    last_error_message = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.broker_slug}: {self.state}"


class SweepRun(models.Model):
    """One heartbeat cycle: how much it claimed and checked, and how late the oldest due check was.

    The beat's tick writes the row (`engine.sweep.sweep_tick`) and the lanes it dispatched add
    their counts to it as they go, on whichever worker runs them; `finished_at` is when its
    last lane finished, so `duration_ms` is the cycle time. A standalone sweep (`sweep_run`
    without a tick) writes its own row. A missing recent row means the beat has stalled; one
    started long ago and never finished means no worker took its lanes.
    """

    owner = models.CharField(max_length=128)
    # The tick's view: how many connections were due (counted up to a bound) and how many lane
    # tasks it sent; lanes_started/lanes_finished are counted by the lanes themselves, so the
    # next tick knows how many are still in flight (the cap on lanes per cluster).
    due = models.PositiveIntegerField(default=0)
    lanes = models.PositiveIntegerField(default=0)
    lanes_started = models.PositiveIntegerField(default=0)
    lanes_finished = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    batches = models.PositiveIntegerField(default=0)
    claimed = models.PositiveIntegerField(default=0)
    checked = models.PositiveIntegerField(default=0)
    refreshed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    deferred = models.PositiveIntegerField(default=0)
    # Seconds between the oldest claimed connection's next_check_at and the claim.
    max_lag_seconds = models.FloatField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"sweep {self.started_at:%Y-%m-%d %H:%M:%S} ({self.checked} checked)"


class UptimeRollup(models.Model):
    """Hourly aggregate of a connection's check results; survives the pruning of raw rows."""

    connection = models.ForeignKey("connections.Connection", on_delete=models.CASCADE, related_name="rollups")
    hour = models.DateTimeField()
    checks = models.PositiveIntegerField(default=0)
    successes = models.PositiveIntegerField(default=0)
    latency_sum_ms = models.BigIntegerField(default=0)
    latency_count = models.PositiveIntegerField(default=0)
    latency_max_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-hour"]
        constraints = [models.UniqueConstraint(fields=["connection", "hour"], name="rollup_unique_connection_hour")]

    def __str__(self) -> str:
        return f"{self.connection_id} {self.hour:%Y-%m-%d %H:00}: {self.successes}/{self.checks}"

    @property
    def latency_avg_ms(self) -> float | None:
        return self.latency_sum_ms / self.latency_count if self.latency_count else None


class Notification(models.Model):
    """An email sent (or decided) about a connection. The unique key makes it once per incident:
    `incident_at` is when the connection entered the state (or the deadline warned about)."""

    class Kind(models.TextChoices):
        NEEDS_REAUTH = "needs_reauth", "Needs re-authentication"
        FAILED = "failed", "Failed"
        RECOVERED = "recovered", "Recovered"
        EXPIRY_WARNING = "expiry_warning", "Expiry warning"
        BROKER_OUTAGE = "broker_outage", "Broker outage"

    connection = models.ForeignKey("connections.Connection", on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    incident_at = models.DateTimeField()
    to_email = models.EmailField(blank=True)
    sent_at = models.DateTimeField(default=timezone.now)
    # Set on a problem notification once the matching "recovered" email went out.
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-sent_at"]
        constraints = [
            models.UniqueConstraint(fields=["connection", "kind", "incident_at"], name="notification_once_per_incident")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.connection_id} ({self.sent_at:%Y-%m-%d %H:%M})"
