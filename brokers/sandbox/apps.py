import os

from django.apps import AppConfig
from django.conf import settings


class SandboxConfig(AppConfig):
    name = "brokers.sandbox"
    label = "sandbox"
    verbose_name = "Sandbox broker"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        if not getattr(settings, "PRODUCTION", False):
            # authlib refuses plain-HTTP OAuth requests; outside production the sandbox is served
            # over http://127.0.0.1 (make run, tests, benchmarks).
            os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
