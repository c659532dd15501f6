from django.apps import AppConfig


class EngineConfig(AppConfig):
    name = "engine"
    verbose_name = "Engine"

    def ready(self) -> None:
        from celery.signals import worker_process_init
        from django.db.backends.signals import connection_created

        from common.pgtimestamps import timestamptz_loader_install
        from connections.signals import broker_answered
        from engine.circuit import broker_answered_record
        from engine.worker import heap_frozen

        broker_answered.connect(broker_answered_record, weak=False, dispatch_uid="engine.circuit.broker_answered")
        # Every connection of the process (the engine's reads the most): datetimes parsed in C.
        connection_created.connect(
            timestamptz_loader_install, weak=False, dispatch_uid="common.pgtimestamps.timestamptz_loader_install"
        )
        worker_process_init.connect(heap_frozen, weak=False, dispatch_uid="engine.worker.heap_frozen")
