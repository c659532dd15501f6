import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# The mounted Sandbox Broker answers token requests even after their client gave up, like the
# brokers it stands in for (see sandbox/abandoned.py).
from sandbox.abandoned import finish_abandoned_requests  # noqa: E402 - after the settings default

application = finish_abandoned_requests(get_asgi_application(), prefix="/sandbox")
