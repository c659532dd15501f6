from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "HTTP API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from api.services import on_connect_session_event
        from partners.signals import connect_session_event

        connect_session_event.connect(on_connect_session_event, dispatch_uid="api.audit.connect_session")
