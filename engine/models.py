"""Engine bookkeeping shared by every worker: each connection's engine state (next check, lease,
last check, score), circuit breakers, sweep runs, check storage (check logs, uptime days,
tallies) and the notification log (which makes every alert happen once per incident)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from connections.models import ENGINE_FIELDS, ErrorCategory  # noqa: F401 - ENGINE_FIELDS: the columns a Connection reads as its own

__all__ = [
    "CheckLog",
    "CheckResult",
    "CheckTally",
    "CircuitBreaker",
    "EngineState",
    "Notification",
    "SweepRun",
    "UptimeDay",
]


class Quality(models.TextChoices):
    EXCELLENT = "excellent", "Excellent"
    GOOD = "good", "Good"
    POOR = "poor", "Poor"
    CRITICAL = "critical", "Critical"


class EngineState(models.Model):
    """A connection's heartbeat bookkeeping: what every check writes, one narrow row per
    connection, kept off the connection's row (sealed tokens, token_meta), which then changes
    only on connect, refresh, disconnect or a status change. An UPDATE of this row rewrites a
    small tuple instead of the wide one, and the engine's batch write cannot clobber a token
    field written at the same moment (docs/engine.md#data-model)."""

    connection = models.OneToOneField(
        "connections.Connection", primary_key=True, on_delete=models.CASCADE, related_name="engine_state"
    )
    # NULL while the connection is not checked (disconnected, archived, needing a reconnect,
    # failed: connections.state.check_scheduled), so the claim's index holds only rows the sweep
    # checks and no claim scans past inactive ones; set again when the connection comes back.
    next_check_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    # The check lease (engine.sweep): who is checking the connection and until when.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=128, blank=True)
    last_check_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    retry_attempt = models.PositiveIntegerField(default=0)
    last_error_category = models.CharField(max_length=16, choices=ErrorCategory.choices, blank=True, default="")
    last_error_message = models.CharField(max_length=500, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    health_score = models.PositiveSmallIntegerField(null=True, blank=True)
    quality = models.CharField(max_length=16, choices=Quality.choices, blank=True)

    class Meta:
        # The sweep's claim reads this index in order (oldest due first); only scheduled rows are in it.
        indexes = [
            models.Index(
                fields=["next_check_at"], condition=models.Q(next_check_at__isnull=False), name="enginestate_due_idx"
            )
        ]

    def __str__(self) -> str:
        return f"engine state of {self.connection_id}"


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


class CheckLog(models.Model):
    """A connection's recent checks and hourly counts in one small packed value (engine.ring),
    rewritten in place by every batch write: no row per check."""

    connection = models.OneToOneField(
        "connections.Connection", primary_key=True, on_delete=models.CASCADE, related_name="check_log"
    )
    data = models.BinaryField(default=b"")

    def __str__(self) -> str:
        return f"check log of {self.connection_id}"


class UptimeDay(models.Model):
    """One UTC day of a connection's checks: totals (kept DAILY_RETENTION_DAYS) and its 24 hours
    packed (engine.ring.hours_unpack; dropped after HOURLY_RETENTION_DAYS). Written once, when
    the connection's first check of a later day leaves the day behind."""

    # No index of its own: the unique (connection, day) index serves every lookup.
    connection = models.ForeignKey(
        "connections.Connection", on_delete=models.CASCADE, related_name="uptime_days", db_index=False
    )
    day = models.DateField()
    checks = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    latency_sum_ms = models.BigIntegerField(default=0)
    latency_count = models.PositiveIntegerField(default=0)
    latency_max_ms = models.PositiveIntegerField(default=0)
    hours = models.BinaryField(null=True, blank=True)

    class Meta:
        ordering = ["-day"]
        constraints = [models.UniqueConstraint(fields=["connection", "day"], name="uptimeday_unique_connection_day")]

    def __str__(self) -> str:
        return f"{self.connection_id} {self.day}: {self.passed}/{self.checks}"


class CheckTally(models.Model):
    """Checks per broker and minute, for metrics, alerts and the system page: their size depends
    on brokers and writers, not on connections. One row per writer (a process's thread) so no
    two writers ever update the same row; readers add them up."""

    # No index of its own: the unique (broker_slug, minute, writer) index and the minute index serve.
    broker_slug = models.SlugField(max_length=64, db_index=False)
    minute = models.DateTimeField()
    writer = models.CharField(max_length=64)
    checks = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    # {category or "error": failed checks}
    failures = models.JSONField(default=dict)
    # Latency histograms {bucket upper bound in ms: checks} (engine.checkstore.latency_bucket):
    # every check with a latency, and passed checks only (for the p95).
    latency_all = models.JSONField(default=dict)
    latency_passed = models.JSONField(default=dict)
    latency_sum_ms = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["broker_slug", "minute", "writer"], name="checktally_unique_writer")
        ]
        indexes = [models.Index(fields=["minute"], name="checktally_minute_idx")]

    def __str__(self) -> str:
        return f"{self.broker_slug} {self.minute:%Y-%m-%d %H:%M}: {self.passed}/{self.checks}"


class Notification(models.Model):
    """An email sent (or decided) about a connection. The unique key makes it once per incident:
    `incident_at` is when the connection entered the state (or the deadline warned about)."""

    class Kind(models.TextChoices):
        NEEDS_REAUTH = "needs_reauth", "Needs re-authentication"
        FAILED = "failed", "Failed"
        RECOVERED = "recovered", "Recovered"
        EXPIRY_WARNING = "expiry_warning", "Expiry warning"
        BROKER_OUTAGE = "broker_outage", "Broker outage"
        # The end of an outage-only incident: the promise the outage email makes.
        OUTAGE_OVER = "outage_over", "Broker outage over"

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


class CheckResult(models.Model):
    """A check kept whole: one that failed or changed the connection's status (engine.checkstore).
    Passed checks live in the connection's CheckLog, UptimeDay and CheckTally instead.
    Kept CHECKRESULT_RETENTION_DAYS."""

    connection = models.ForeignKey("connections.Connection", on_delete=models.CASCADE, related_name="checks")
    checked_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    category = models.CharField(max_length=16, choices=ErrorCategory.choices, blank=True, default="")

    class Meta:
        ordering = ["-checked_at"]
        indexes = [models.Index(fields=["connection", "-checked_at"], name="check_connection_time_idx")]

    def __str__(self) -> str:
        return f"{'ok' if self.ok else self.category or 'failed'} at {self.checked_at:%Y-%m-%d %H:%M:%S}"
