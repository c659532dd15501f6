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
        """ops builds on connections, never the other way: it answers the pages' questions through
        connections.hub, and webhooks listen to the connection history (every status change, refresh
        failure and expiry warning writes a row there) through post_save."""
        from functools import partial

        from django.db.models.signals import post_save

        from connections import hub
        from connections.engine.models import Notification
        from connections.models import ConnectionEvent
        from ops.alerts import alerts_open
        from ops.health import health_status_page
        from ops.services import service_heartbeat_latest
        from ops.webhooks import on_connection_event, on_notification

        post_save.connect(on_connection_event, sender=ConnectionEvent, dispatch_uid="ops.webhooks.event")
        post_save.connect(on_notification, sender=Notification, dispatch_uid="ops.webhooks.notification")
        hub.provide("beat_last_seen", partial(service_heartbeat_latest, kind="beat"))
        hub.provide("services_health", health_status_page)
        hub.provide("open_alerts", lambda: list(alerts_open()))
