from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from celery.signals import task_postrun, task_prerun
        from django.conf import settings

        from ops.logging import celery_task_finished, celery_task_started, install_record_redaction

        install_record_redaction()
        self._subscribe_to_connections()
        task_prerun.connect(celery_task_started, weak=False, dispatch_uid="ops.task_id.start")
        task_postrun.connect(celery_task_finished, weak=False, dispatch_uid="ops.task_id.end")
        if not settings.REDIS_URL:
            # kombu's filesystem transport does not create its folders.
            options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
            from pathlib import Path

            for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
                if options.get(key):
                    Path(options[key]).mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _subscribe_to_connections() -> None:
        """ops builds on connections, never the other way: its webhooks hear the connection
        history (every status change, refresh failure, revocation, expiry warning) from the
        outbox's signals, once, after the transaction that wrote it committed."""
        from connections import outbox
        from ops.webhooks import on_events_committed, on_notification_committed

        outbox.event_committed.connect(on_events_committed, dispatch_uid="ops.webhooks.events")
        outbox.notification_committed.connect(on_notification_committed, dispatch_uid="ops.webhooks.notification")
