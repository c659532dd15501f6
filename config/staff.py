"""Second factors for staff (allauth.mfa: TOTP, WebAuthn, recovery codes): who counts as verified staff.

Admin and every staff-only page require that the person has enrolled a second factor.
Signing in happens only through allauth's login, which asks for that factor whenever one
is enrolled, so "staff with a second factor" means "signed in with two factors".
"""

from __future__ import annotations

SECOND_FACTORS = ("totp", "webauthn")


def user_has_second_factor(user) -> bool:
    from allauth.mfa.models import Authenticator

    if not getattr(user, "is_authenticated", False):
        return False
    return Authenticator.objects.filter(user=user, type__in=SECOND_FACTORS).exists()


def staff_verified(user) -> bool:
    """Active staff with a second factor: what admin and operator pages ask for."""
    return bool(
        user is not None and user.is_authenticated and user.is_active and user.is_staff
        and user_has_second_factor(user)
    )
