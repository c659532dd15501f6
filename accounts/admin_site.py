"""The admin site: signed in only through allauth, reachable only with a second factor.

Django's own admin login form has no rate limit and no second factor (security finding 4),
so it is never shown: /admin/login/ sends anonymous people to allauth's login (rate-limited,
with the MFA stage) and staff without a second factor to the enrolment page.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from common.staff import staff_account_ready, staff_verified


class BrokerlinkAdminSite(admin.AdminSite):
    # The sidebar repeats the index page's model list and took 300 px: at 1280 px the
    # connection list's columns were cut off behind its filters.
    enable_nav_sidebar = False

    def has_permission(self, request) -> bool:
        return super().has_permission(request) and staff_verified(request)

    def login(self, request, extra_context=None):
        nxt = request.GET.get(REDIRECT_FIELD_NAME) or request.POST.get(REDIRECT_FIELD_NAME) or ""
        if not url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}):
            nxt = ""
        nxt = nxt or reverse("admin:index", current_app=self.name)
        user = request.user
        if not user.is_authenticated:
            login_url = resolve_url("account_login")
            return HttpResponseRedirect(f"{login_url}?{urlencode({REDIRECT_FIELD_NAME: nxt})}")
        if not (user.is_active and user.is_staff):
            raise PermissionDenied
        if not staff_account_ready(user):
            messages.warning(
                request, "Admin requires a second factor. Set up an authenticator app or a security key first."
            )
            return HttpResponseRedirect(resolve_url("mfa_index"))
        if not staff_verified(request):
            # Enrolled, but this session never used the factor (signed in before enrolling, or
            # in another browser): allauth asks for it, then comes back.
            return HttpResponseRedirect(f"{resolve_url('mfa_reauthenticate')}?{urlencode({REDIRECT_FIELD_NAME: nxt})}")
        return HttpResponseRedirect(nxt)
