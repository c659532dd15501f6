import os

from django.apps import AppConfig
from django.conf import settings


class SandboxConfig(AppConfig):
    name = "sandbox"
    label = "sandbox"
    verbose_name = "Sandbox broker"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from sandbox import services
        from sandbox.models import SandboxClient, SandboxGrant, SandboxToken

        for model in (SandboxClient, SandboxGrant, SandboxToken):
            uid = f"sandbox-token-cache-{model.__name__}"
            post_save.connect(services.token_cache_clear, sender=model, dispatch_uid=uid)
            post_delete.connect(services.token_cache_clear, sender=model, dispatch_uid=uid + "-delete")
        if not getattr(settings, "PRODUCTION", False):
            # authlib refuses plain-HTTP OAuth requests; outside production the sandbox is served
            # over http://127.0.0.1 (make run, tests, benchmarks).
            os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
