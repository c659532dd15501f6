from django.apps import AppConfig


class BrokersConfig(AppConfig):
    name = "brokers"
    verbose_name = "Brokers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from brokers.checks import check_broker_profiles, check_outbound_switch

        checks.register(check_broker_profiles, "brokers")
        checks.register(check_outbound_switch, "brokers", deploy=True)
