"""The standalone sandbox as a WSGI app, so the benchmark can serve it with gunicorn threads
(under ASGI its sync views share one thread and a 50 ms latency fault caps it at 20 req/s)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokers.sandbox.standalone_settings")

application = get_wsgi_application()
