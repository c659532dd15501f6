"""allauth's emails speak as brokerlink, not as the host they were requested from."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings


def brokerlink_site() -> SimpleNamespace:
    return SimpleNamespace(name="brokerlink", domain=urlsplit(settings.SITE_URL).netloc or "brokerlink")


class AccountAdapter(DefaultAccountAdapter):
    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        # Without this, allauth greets "Hello from 127.0.0.1:8103!" (the request's host).
        context = {"current_site": brokerlink_site(), "site_url": settings.SITE_URL, **context}
        super().send_mail(template_prefix, email, context)
