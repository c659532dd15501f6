"""allauth adapter: the failed-login limit keyed on account *and* address, safe without a cache.

allauth keys its per-account limit on the email alone, so anyone could lock a person out
with five wrong passwords (security finding 8). Here the key is (email, client address):
a stranger elsewhere cannot lock the account, and allauth's per-address limit still slows
one address trying many accounts.

While the cache (Redis) is down allauth's limiter sees no history and would allow every
attempt; this adapter then counts failures in the process instead (degrading to a
per-process limit, never to none).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque

from allauth.account.adapter import DefaultAccountAdapter
from django.core.cache import cache

FALLBACK_ATTEMPTS = 5
FALLBACK_WINDOW_SECONDS = 300
_fallback: dict[str, deque] = defaultdict(deque)
_fallback_lock = threading.Lock()


def cache_available() -> bool:
    probe = "accounts.cache-probe"
    try:
        cache.set(probe, "1", 5)
        return cache.get(probe) == "1"
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


class AccountAdapter(DefaultAccountAdapter):
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
