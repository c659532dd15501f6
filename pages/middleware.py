"""Signed-out answers for the live parts of the pages.

A card, panel or summary that polls (or a Check now button) after the session ended would get
the login redirect, which htmx follows and swaps in: a whole login page inside a card. This
middleware answers such htmx requests instead with 286 (htmx stops polling that element),
no swap, and a `brokerlink:signed-out` event; static/js/live.js shows "You were signed out"
with a sign-in link that returns to the page."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import resolve_url
from django.utils.http import url_has_allowed_host_and_scheme

SIGNED_OUT_EVENT = "brokerlink:signed-out"


def signed_out_response(request) -> HttpResponse:
    page = request.headers.get("HX-Current-URL", "")
    next_path = ""
    if page and url_has_allowed_host_and_scheme(page, allowed_hosts={request.get_host()}):
        from urllib.parse import urlsplit

        parts = urlsplit(page)
        next_path = parts.path + (f"?{parts.query}" if parts.query else "")
    login = resolve_url(settings.LOGIN_URL)
    if next_path:
        from urllib.parse import urlencode

        login = f"{login}?{urlencode({'next': next_path})}"
    response = HttpResponse(status=286)
    response["HX-Reswap"] = "none"
    response["HX-Trigger"] = json.dumps({SIGNED_OUT_EVENT: {"login": login}})
    return response


class HtmxSignedOutMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.login_path = None

    def __call__(self, request):
        response = self.get_response(request)
        if request.headers.get("HX-Request") != "true" or response.status_code not in (301, 302):
            return response
        if self.login_path is None:
            self.login_path = resolve_url(settings.LOGIN_URL)
        location = response.get("Location", "")
        if location.split("?")[0].endswith(self.login_path) and not request.user.is_authenticated:
            return signed_out_response(request)
        return response
