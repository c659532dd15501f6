from django.contrib import admin

from preferences.models import NotificationChannel, NotificationSettings


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
