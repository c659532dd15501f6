import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from vault.fields import SealedField


class ServiceHeartbeat(models.Model):
    """Last sign of life of a background process (beat, each worker).

    The embedded broker cannot broadcast `celery inspect ping`, so liveness is read from
    rows the processes write themselves.
    """

    class Kind(models.TextChoices):
        BEAT = "beat", "Celery beat"
        WORKER = "worker", "Celery worker"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=255)
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "name"], name="ops_heartbeat_kind_name")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class Alert(models.Model):
    """A condition an administrator should look at. One open row per key (kind + broker); the
    evaluator updates it while the condition lasts and clears it when the condition ends."""

    class Kind(models.TextChoices):
        HIGH_LATENCY = "high_latency", "High latency"
        HIGH_ERROR_RATE = "high_error_rate", "High error rate"
        LOW_HEALTHY_SHARE = "low_healthy_share", "Low share of healthy connections"
        SWEEP_BEHIND = "sweep_behind", "Sweep behind schedule"

    class Severity(models.TextChoices):
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    key = models.CharField(max_length=128)
    broker_slug = models.SlugField(max_length=64, blank=True)
    kind = models.CharField(max_length=24, choices=Kind.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    message = models.CharField(max_length=500)
    # The measured value behind the latest evaluation (ms, share, seconds).
    value = models.FloatField(null=True, blank=True)
    raised_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cleared_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-raised_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=models.Q(cleared_at__isnull=True), name="ops_alert_open_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_severity_display()}: {self.message}"

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None


class WebhookEndpoint(models.Model):
    """Where connection events are POSTed, signed to the Standard Webhooks spec with this
    endpoint's secret (`whsec_<base64>`), and with the previous one during a rotation."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, blank=True)
    url = models.URLField(max_length=500)
    secret_sealed = models.TextField(blank=True, default="", editable=False)
    secret = SealedField("secret_sealed")
    # After a rotation the old secret signs too, until this time: receivers switch without downtime.
    previous_secret_sealed = models.TextField(blank=True, default="", editable=False)
    previous_secret = SealedField("previous_secret_sealed")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    # Event types this endpoint receives; empty means all of them.
    event_types = models.JSONField(default=list, blank=True)
    # Told by email when the endpoint is disabled for failing; the site admins when empty.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A partner app's endpoint receives the events of that app's end users' connections only;
    # an endpoint without an app, those of brokerlink users' connections only.
    app = models.ForeignKey(
        "partners.PartnerApp", null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    last_success_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "url"]

    def __str__(self) -> str:
        return self.name or self.url

    def wants(self, event_type: str) -> bool:
        return self.enabled and (not self.event_types or event_type in self.event_types)


class WebhookDelivery(models.Model):
    """One event for one endpoint, with its attempts. Delivered rows are never sent again."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Gave up"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField(default=uuid.uuid4)
    event = models.CharField(max_length=40)
    connection_id = models.UUIDField(null=True, blank=True, db_index=True)
    payload = models.JSONField()
    attempts = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Start of the current retry schedule: an endpoint failing ever since is disabled.
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="ops_webhook_delivery_once"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="ops_webhook_due_idx")]

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint} ({self.status})"
