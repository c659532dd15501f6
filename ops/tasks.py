from celery import shared_task

from ops.services import service_heartbeat_record


@shared_task(bind=True, acks_late=True, ignore_result=True)
def beat_tick(self) -> None:
    """Executed by whichever worker takes it: proof that a worker is consuming."""
    service_heartbeat_record(kind="worker", name=self.request.hostname or "unknown")


@shared_task(ignore_result=True)
def record_marker(name: str) -> None:
    """A task with a visible side effect, used to prove a worker executes what the app sends."""
    service_heartbeat_record(kind="worker", name=f"marker:{name}")
