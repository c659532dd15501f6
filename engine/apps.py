from django.apps import AppConfig


class EngineConfig(AppConfig):
    name = "engine"
    verbose_name = "Engine"

    def ready(self) -> None:
        from connections.signals import broker_answered
        from engine.circuit import broker_answered_record

        broker_answered.connect(broker_answered_record, weak=False, dispatch_uid="engine.circuit.broker_answered")
