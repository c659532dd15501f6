from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "accounts"


class BrokerlinkAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with brokerlink's site (allauth login, second factor for staff)."""

    default = False
    default_site = "accounts.admin_site.BrokerlinkAdminSite"
