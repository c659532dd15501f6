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


@shared_task(ignore_result=True)
def alerts_evaluate() -> dict:
    from ops.alerts import alerts_evaluate as evaluate

    return evaluate()


@shared_task(ignore_result=True)
def webhook_deliver(delivery_id: str) -> str:
    from ops.webhooks import webhook_deliver as deliver

    return deliver(delivery_id)


@shared_task(ignore_result=True)
def webhooks_retry_due() -> int:
    """Send due deliveries whose countdown message was lost (broker restart, worker killed)."""
    from ops.webhooks import webhook_deliver as deliver
    from ops.webhooks import webhooks_due

    due = webhooks_due()
    for delivery_id in due:
        deliver(delivery_id)
    return len(due)
