from django.apps import AppConfig


class PartnersConfig(AppConfig):
    name = "partners"
    verbose_name = "Partner apps and their end users"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The broker's callback is connections' (its URL is registered at the broker); a flow a
        # connect session started is finished here, through connections' public hand-off registry.
        from connections.oauth_flow import handoff_register
        from partners.views import ConnectSessionHandoff

        handoff_register(ConnectSessionHandoff.name, ConnectSessionHandoff())
