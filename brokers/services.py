"""Broker credentials and the catalog users pick from. Every caller (views, tasks, admin) uses these."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from brokers.models import BrokerApp, BrokerRequest, Environment
from brokers.profile import BrokerProfile
from brokers.registry import UnknownBroker, all_profiles, get_profile
from brokers.rotation import RotationObserved, refresh_token_single_use

log = logging.getLogger(__name__)


def broker_app_is_configured(app: BrokerApp, profile: BrokerProfile | None = None) -> bool:
    """Enough to start an authorization: enabled, client id, and a secret unless the broker needs
    none (a public client). `profile` saves the lookup when the caller has it."""
    if not (app.enabled and app.client_id):
        return False
    if profile is None:
        try:
            profile = get_profile(app.broker_slug)
        except UnknownBroker:
            return False
    needs_secret = profile.token_rules.token_auth_method != "none"  # noqa: S105
    return app.has_client_secret or not needs_secret


@dataclass(frozen=True)
class CatalogEntry:
    profile: BrokerProfile
    app: BrokerApp | None
    configured: bool
    # For users when not configured: what an administrator must do.
    admin_hint: str

    @property
    def slug(self) -> str:
        return self.profile.slug

    @property
    def config_problem(self) -> str:
        return self.app.config_problem if self.app else ""


def broker_app_for(slug: str, environment: str | None = None) -> BrokerApp | None:
    """The enabled app for a broker; without `environment`, live is preferred over paper."""
    apps = BrokerApp.objects.filter(broker_slug=slug, enabled=True)
    if environment:
        return apps.filter(environment=environment).first()
    by_env = {app.environment: app for app in apps}
    return by_env.get(Environment.LIVE) or by_env.get(Environment.PAPER)


def _admin_hint(profile: BrokerProfile, app: BrokerApp | None) -> str:
    if app is None:
        return f"Ask an administrator to add {profile.name} client credentials in Admin › Broker apps"
    if not app.enabled:
        return f"Ask an administrator to enable the {profile.name} broker app in Admin › Broker apps"
    if app.config_problem:
        return f"Ask an administrator to fix the {profile.name} client credentials in Admin › Broker apps"
    if not app.client_id:
        return f"Ask an administrator to add the {profile.name} client ID in Admin › Broker apps"
    return f"Ask an administrator to add the {profile.name} client secret in Admin › Broker apps"


def broker_catalog() -> list[CatalogEntry]:
    """Every known broker with its app (if any) and whether users can connect to it now.

    A broker whose app has a config problem (the broker said invalid_client) is shown as not
    configured until an administrator clears it.
    """
    apps: dict[str, list[BrokerApp]] = {}
    for app in BrokerApp.objects.all():
        apps.setdefault(app.broker_slug, []).append(app)
    entries = []
    for profile in all_profiles():
        if profile.is_sandbox and not settings.SANDBOX_ENABLED:
            continue
        candidates = sorted(apps.get(profile.slug, []), key=lambda a: (not a.enabled, a.environment != "live"))
        app = candidates[0] if candidates else None
        configured = bool(app and broker_app_is_configured(app, profile) and not app.config_problem)
        entries.append(CatalogEntry(profile, app, configured, "" if configured else _admin_hint(profile, app)))
    # What a user can connect now comes first (on a fresh install: the Sandbox Broker).
    entries.sort(key=lambda entry: not entry.configured)
    return entries


def broker_app_flag_config_problem(app: BrokerApp, message: str) -> bool:
    """Record that the broker rejected this app's credentials. Safe twice: flags once.

    Returns True when this call set the flag.
    """
    with transaction.atomic():
        updated = BrokerApp.objects.filter(pk=app.pk, config_problem_at__isnull=True).update(
            config_problem=message[:2000], config_problem_at=timezone.now(), updated_at=timezone.now()
        )
    app.refresh_from_db(fields=["config_problem", "config_problem_at"])
    if updated:
        log.warning("brokers.app.config_problem", extra={"broker": app.broker_slug, "environment": app.environment})
    return bool(updated)


def broker_app_rotation_observed(app: BrokerApp | None) -> RotationObserved:
    if app is None:
        return RotationObserved()
    return RotationObserved(rotation_seen=app.refresh_rotation_seen_at is not None, kept_count=app.refresh_kept_count)


def broker_app_refresh_single_use(app: BrokerApp | None, profile: BrokerProfile) -> bool:
    """Whether this app's refresh tokens are treated as single-use (brokers.rotation)."""
    return refresh_token_single_use(
        declared_rotates=profile.token_rules.rotates_refresh_token, observed=broker_app_rotation_observed(app)
    )


def broker_app_refresh_observed(app: BrokerApp, *, rotated: bool) -> None:
    """Learn from one refresh answer: a new refresh token marks the broker rotating for good
    (logged once); the same one kept is counted. One conditional UPDATE, no lock."""
    now = timezone.now()
    if rotated:
        marked = BrokerApp.objects.filter(pk=app.pk, refresh_rotation_seen_at__isnull=True).update(
            refresh_rotation_seen_at=now
        )
        if marked:
            app.refresh_rotation_seen_at = now
            log.info("brokers.app.rotation_seen", extra={"broker": app.broker_slug, "environment": app.environment})
        return
    BrokerApp.objects.filter(pk=app.pk).update(refresh_kept_count=F("refresh_kept_count") + 1)
    app.refresh_kept_count += 1


def broker_app_rotation_summary(app: BrokerApp, profile: BrokerProfile | None = None) -> str:
    """One line for admin and the status page: declared, seen, and how brokerlink treats them."""
    if profile is None:
        try:
            profile = get_profile(app.broker_slug)
        except UnknownBroker:
            return "unknown broker"
    declared = "declared rotating" if profile.token_rules.rotates_refresh_token else "not declared rotating"
    if app.refresh_rotation_seen_at is not None:
        seen = f"seen rotating since {app.refresh_rotation_seen_at:%Y-%m-%d %H:%M} UTC"
    elif app.refresh_kept_count:
        seen = f"kept the same refresh token {app.refresh_kept_count} time(s)"
    else:
        seen = "no refresh seen yet"
    treated = "single-use" if broker_app_refresh_single_use(app, profile) else "reusable"
    return f"{declared}; {seen}; treated as {treated}"


def broker_app_clear_config_problem(app: BrokerApp) -> None:
    BrokerApp.objects.filter(pk=app.pk).update(config_problem="", config_problem_at=None, updated_at=timezone.now())
    app.config_problem, app.config_problem_at = "", None
    log.info("brokers.app.config_problem_cleared", extra={"broker": app.broker_slug, "environment": app.environment})


def broker_requests_for_user(*, user) -> set[str]:
    """The slugs of the brokers this person asked the administrators for."""
    return set(BrokerRequest.objects.filter(user=user).values_list("broker_slug", flat=True))


def broker_request_create(*, user, profile: BrokerProfile) -> bool:
    """Record that `user` wants `profile`'s broker; email staff on the broker's first request only.

    Returns True when this is a new request from this person (False if they asked before)."""
    try:
        with transaction.atomic():
            request = BrokerRequest.objects.create(user=user, broker_slug=profile.slug)
    except IntegrityError:
        return False
    try:
        with transaction.atomic():
            claimed = BrokerRequest.objects.filter(pk=request.pk).update(staff_notified_at=timezone.now())
    except IntegrityError:
        claimed = 0  # staff already heard about this broker (the partial unique constraint)
    if claimed:
        staff = list(
            get_user_model()
            .objects.filter(is_staff=True, is_active=True)
            .exclude(email="")
            .values_list("email", flat=True)
        )
        link = settings.SITE_URL.rstrip("/") + reverse("admin:brokers_brokerapp_add")
        if staff:
            send_mail(
                f"[brokerlink] A user asked for {profile.name}",
                f"Someone asked to connect {profile.name}, which this brokerlink cannot connect yet.\n\n"
                f"Add its client credentials in admin to offer it:\n{link}\n",
                settings.DEFAULT_FROM_EMAIL,
                staff,
                fail_silently=True,
            )
        log.info("brokers.request.staff_notified", extra={"broker": profile.slug, "staff": len(staff)})
    return True
