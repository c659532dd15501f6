from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from accounts.middleware import session_started

        user_logged_in.connect(session_started, dispatch_uid="accounts.session_started")


class BrokerlinkAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with brokerlink's site (allauth login, second factor for staff)."""

    default = False
    default_site = "accounts.admin_site.BrokerlinkAdminSite"
