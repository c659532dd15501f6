from django.db import models


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
