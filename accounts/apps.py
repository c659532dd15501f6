from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from allauth.mfa.signals import authenticator_added
        from django.contrib.auth.signals import user_logged_in

        from accounts.factors import on_authenticator_added
        from accounts.middleware import session_started

        user_logged_in.connect(session_started, dispatch_uid="accounts.session_started")
        authenticator_added.connect(on_authenticator_added, dispatch_uid="accounts.factor_ends_other_sessions")


class BrokerlinkAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with brokerlink's site (allauth login, second factor for staff)."""

    default = False
    default_site = "accounts.admin_site.BrokerlinkAdminSite"
