from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from accounts.models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_staff", "is_active", "date_joined")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    actions = ["disconnect_and_deactivate"]

    @admin.action(description="Disconnect (revoke) every connection and deactivate", permissions=["change"])
    def disconnect_and_deactivate(self, request, queryset):
        """What deleting a person would have done, minus the damage.

        Connection.user is PROTECT, so a user with connections cannot be deleted: their grants
        are revoked through the same service and permission check as the connection admin, and
        the rows and their history stay as the audit trail.
        """
        from connections.admin import DISCONNECT_OTHERS, admin_action_record, may_disconnect
        from connections.models import Connection
        from connections.services import connection_disconnect

        connections = list(Connection.objects.filter(user__in=queryset).select_related("user"))
        refused = [c for c in connections if not may_disconnect(request.user, c)]
        if refused:
            self.message_user(
                request,
                f"Nothing changed: you may not disconnect other people's connections ({len(refused)} selected). "
                f"Ask for the “{DISCONNECT_OTHERS}” permission.",
                messages.ERROR,
            )
            return
        for connection in connections:
            outcome = connection_disconnect(connection, actor=request.user)
            admin_action_record(
                connection=connection, user=request.user, action="disconnect and deactivate", result=outcome.message
            )
        for user in queryset:
            if user.is_active and user.pk != request.user.pk:
                user.is_active = False
                user.save(update_fields=["is_active"])
                self.log_change(request, user, "Deactivated after disconnecting every connection")
        self.message_user(request, f"Disconnected {len(connections)} connection(s); deactivated the selected users.")
