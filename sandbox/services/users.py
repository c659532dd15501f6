"""Sandbox users (the people who sign in at the sandbox broker) and their accounts."""

from __future__ import annotations

import secrets

from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction

from sandbox.models import SandboxAccount, SandboxUser

DEMO_USERNAME = "demo"
# A public demo login, printed on the sandbox login page on purpose.
DEMO_PASSWORD = "demo-broker-pass"  # noqa: S105
DEMO_ACCOUNTS = [("Individual", "PA00001234"), ("Margin", "PA00005678")]


def user_create(
    *, username: str, password: str, display_name: str = "", accounts: list[tuple[str, str]] | None = None
) -> SandboxUser:
    with transaction.atomic():
        user = SandboxUser.objects.create(
            username=username, password=make_password(password), display_name=display_name or username
        )
        for kind, number in accounts or []:
            SandboxAccount.objects.create(user=user, kind=kind, account_number=number)
    return user


def user_get(user_id) -> SandboxUser | None:
    """The sandbox user a signed-in browser names (by id), or None when it no longer exists."""
    return SandboxUser.objects.filter(pk=user_id).first()


def user_authenticate(*, username: str, password: str) -> SandboxUser | None:
    user = SandboxUser.objects.filter(username=username).first()
    if user is None or not check_password(password, user.password):
        return None
    return user


def sandbox_demo_user_ensure() -> SandboxUser:
    """The demo login shown on the sandbox login page, with two paper accounts. Safe to run twice."""
    user = SandboxUser.objects.filter(username=DEMO_USERNAME).first()
    if user is None:
        user = user_create(
            username=DEMO_USERNAME, password=DEMO_PASSWORD, display_name="Demo Trader", accounts=DEMO_ACCOUNTS
        )
    return user


def random_account_number() -> str:
    return f"PA{secrets.randbelow(10**8):08d}"
