"""brokerlink's allauth adapter.

- Emails speak as brokerlink, not as the host they were requested from; the confirmation
  link is built from SITE_URL.
- The failed-login limit is keyed on account *and* address (security finding 8). allauth keys
  its per-account limit on the email alone, so anyone could lock a person out with five wrong
  passwords; with (email, client address) a stranger elsewhere cannot, and allauth's
  per-address limit still slows one address trying many accounts.
- While the cache (Redis) is down allauth's limiter sees no history and would allow every
  attempt; failures are then counted in the process instead (a per-process limit, never none).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from types import SimpleNamespace
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse

FALLBACK_ATTEMPTS = 5
FALLBACK_WINDOW_SECONDS = 300
_fallback: dict[str, deque] = defaultdict(deque)
_fallback_lock = threading.Lock()


def brokerlink_site() -> SimpleNamespace:
    return SimpleNamespace(name="brokerlink", domain=urlsplit(settings.SITE_URL).netloc or "brokerlink")


def cache_available() -> bool:
    probe = "accounts.cache-probe"
    try:
        cache.set(probe, "1", 5)
        return cache.get(probe) == "1"
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


class AccountAdapter(DefaultAccountAdapter):
    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        # Without this, allauth greets "Hello from 127.0.0.1:8103!" (the request's host).
        context = {"current_site": brokerlink_site(), "site_url": settings.SITE_URL, **context}
        super().send_mail(template_prefix, email, context)

    def get_email_confirmation_url(self, request, emailconfirmation) -> str:
        # From SITE_URL like every link brokerlink emails (not the host the request came to).
        path = reverse("account_confirm_email", args=[emailconfirmation.key])
        return f"{settings.SITE_URL.rstrip('/')}{path}"

    def _get_login_attempts_cache_key(self, request, **credentials) -> str:
        key = super()._get_login_attempts_cache_key(request, **credentials)
        return f"{key}:{self.get_client_ip(request)}"

    def pre_authenticate(self, request, **credentials) -> None:
        super().pre_authenticate(request, **credentials)
        if cache_available():
            return
        key = self._get_login_attempts_cache_key(request, **credentials)
        now = time.monotonic()
        with _fallback_lock:
            attempts = _fallback[key]
            while attempts and now - attempts[0] > FALLBACK_WINDOW_SECONDS:
                attempts.popleft()
            if len(attempts) >= FALLBACK_ATTEMPTS:
                raise self.validation_error("too_many_login_attempts")
        self._fallback_key = key

    def authentication_failed(self, request, **credentials) -> None:
        key = getattr(self, "_fallback_key", None)
        if key:
            with _fallback_lock:
                _fallback[key].append(time.monotonic())
        super().authentication_failed(request, **credentials)
