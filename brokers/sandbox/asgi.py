"""ASGI entry point of the standalone sandbox server."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokers.sandbox.standalone_settings")

application = get_asgi_application()
