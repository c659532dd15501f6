from allauth.account import models as allauth_models
from allauth.account.admin import EmailAddressAdmin
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import EmailAddress, NotificationChannel, NotificationSettings, User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "time_zone", "is_staff", "is_active", "date_joined")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "time_zone")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


# allauth registers its email addresses under its own "Accounts" app, a second section of
# that name in the sidebar: list them here instead, with allauth's own admin class.
admin.site.unregister(allauth_models.EmailAddress)
admin.site.register(EmailAddress, EmailAddressAdmin)


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    list_display = ("user", "needs_you", "recovered", "expiring", "broker_outage", "email", "updated_at")
    list_select_related = ("user",)


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    # The URL holds the channel's credentials: only its sealed column exists, and it is not shown.
    list_display = ("name", "user", "display", "enabled", "created_at")
    fields = ("user", "name", "display", "enabled", "created_at")
    readonly_fields = ("user", "display", "created_at")

    def has_add_permission(self, request) -> bool:
        return False
