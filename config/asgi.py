import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.conf import settings  # noqa: E402 - after the settings default

from common.threadlanes import PageThreads  # noqa: E402
from sandbox.abandoned import finish_abandoned_requests  # noqa: E402

# The most viewed pages on a few reused threads, first come first served (common/threadlanes.py).
django_application = PageThreads(
    get_asgi_application(), size=settings.WEB_PAGE_THREADS, timeout=settings.WEB_PAGE_WAIT_SECONDS
)
# The mounted Sandbox Broker answers token requests even after their client gave up, like the
# brokers it stands in for (see sandbox/abandoned.py).
application = finish_abandoned_requests(django_application, prefix="/sandbox")
