"""Second factors for staff (allauth.mfa: TOTP, WebAuthn, recovery codes): who counts as verified staff.

Admin and every staff-only page require that THIS SESSION passed a second factor, not merely
that the account has one enrolled (issue 24: a password-only session reached admin once the
account enrolled TOTP in another session). allauth records every authentication step of a
session (`allauth.account.authentication.get_authentication_records`); a session that has no
"mfa" step is sent through allauth's reauthentication with a factor (`mfa_reauthenticate`).
Staff with no factor at all are sent to enrol one first (enrolment itself asks for a recent
password reauthentication, and ends the account's other sessions: accounts.factors).
"""

from __future__ import annotations

SECOND_FACTORS = ("totp", "webauthn")
# A recovery code is the fallback second factor allauth accepts at sign-in; a session that
# used one passed a second factor.
SESSION_FACTORS = ("totp", "webauthn", "recovery_codes")


def user_has_second_factor(user) -> bool:
    from allauth.mfa.models import Authenticator

    if not getattr(user, "is_authenticated", False):
        return False
    return Authenticator.objects.filter(user=user, type__in=SECOND_FACTORS).exists()


def session_passed_second_factor(request) -> bool:
    """True when the signed-in person used a second factor in this session (sign-in or reauthentication)."""
    from allauth.account.authentication import get_authentication_records

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not hasattr(request, "session"):
        return False
    return any(
        record.get("method") == "mfa" and record.get("type") in SESSION_FACTORS
        for record in get_authentication_records(request, user)
    )


def staff_account_ready(user) -> bool:
    """Active staff with a second factor enrolled (the account side of the rule)."""
    return bool(
        user is not None and user.is_authenticated and user.is_active and user.is_staff
        and user_has_second_factor(user)
    )


def staff_verified(request) -> bool:
    """Active staff with a factor, in a session that passed it: what admin and operator pages ask for."""
    user = getattr(request, "user", None)
    return staff_account_ready(user) and session_passed_second_factor(request)


def second_factor_redirect(request):
    """Where to send staff who may not see a staff page yet, or None (not staff: the caller refuses).

    Enrolled but this session never used the factor: allauth's reauthentication with a factor,
    then back here. No factor at all: the enrolment page."""
    from urllib.parse import urlencode

    from django.contrib.auth import REDIRECT_FIELD_NAME
    from django.http import HttpResponseRedirect
    from django.urls import NoReverseMatch, reverse

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not (user.is_active and user.is_staff):
        return None
    try:
        if staff_account_ready(user):
            query = urlencode({REDIRECT_FIELD_NAME: request.get_full_path()})
            return HttpResponseRedirect(f"{reverse('mfa_reauthenticate')}?{query}")
        return HttpResponseRedirect(reverse("mfa_index"))
    except NoReverseMatch:  # a server without allauth's pages (the standalone sandbox)
        return None
