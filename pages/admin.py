"""Admin for connections and their events (the engine's breakers and sweep runs: engine/admin.py).

Every action calls the same service the views and the engine use, and records an
`admin_action` event naming the administrator. Tokens are never shown: the sealed columns
are not fields of any form or list here, only "present, expires at …".
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils import timezone

from common.admin_mixins import ReadOnlyAdminMixin
from connections.admin_record import admin_action_record
from connections.errors import BrokerError
from connections.models import Connection, ConnectionEvent
from connections.services.disconnect import connection_disconnect
from connections.state import INACTIVE_STATUSES
from engine.circuit import circuit_reset
from engine.services import CheckBusy, connection_check_now, connection_refresh_now

DISCONNECT_OTHERS = "connections.disconnect_others"


def may_disconnect(user, connection: Connection) -> bool:
    return connection.user_id == user.pk or user.is_superuser or user.has_perm(DISCONNECT_OTHERS)


def _token_phrase(present: bool, expires_at) -> str:
    if not present:
        return "absent"
    when = timezone.localtime(expires_at).strftime("%Y-%m-%d %H:%M:%S %Z") if expires_at else "no expiry known"
    return f"present, expires at {when}"


class ConnectionEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ConnectionEvent
    fields = ["created_at", "kind", "from_status", "to_status", "category", "message", "actor"]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    extra = 0
    max_num = 0
    show_change_link = False
    verbose_name_plural = "Event history"


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    # Short column titles: with the filters beside it, the list must fit 1280 px.
    list_display = [
        "user_email",
        "broker",
        "account",
        "status",
        "state_words",
        "health",
        "last_check",
        "next_check",
    ]
    list_filter = ["broker_slug", "status", "engine_state__quality"]
    search_fields = ["user__email", "account_number_masked"]
    list_select_related = ["user", "end_user__app", "engine_state"]
    ordering = ["-created_at"]
    # Explicit and read-only: the *_sealed columns are never form fields.
    fieldsets = [
        (
            None,
            {"fields": ["id", "user", "end_user", "broker_slug", "environment", "broker_app", "status",
                        "status_changed_at"]},
        ),
        ("Account", {"fields": ["account_id", "account_number_masked", "account_label", "nickname"]}),
        (
            "Tokens",
            {
                "fields": [
                    "access_token_state",
                    "refresh_token_state",
                    "token_type",
                    "scope",
                    "grant_started_at",
                    "reauth_deadline_at",
                    "last_refreshed_at",
                ]
            },
        ),
        (
            "Health",
            {
                "fields": [
                    "health_score",
                    "quality",
                    "last_check_at",
                    "last_success_at",
                    "next_check_at",
                    "last_latency_ms",
                    "consecutive_failures",
                    "retry_attempt",
                    "last_error_category",
                    "last_error_message",
                    "lease_owner",
                    "lease_until",
                ]
            },
        ),
        ("History", {"fields": ["created_at", "updated_at", "disconnected_at", "archived_at"]}),
    ]
    readonly_fields = [name for _, options in fieldsets for name in options["fields"]]
    inlines = [ConnectionEventInline]
    actions = ["check_now", "refresh_now", "disconnect_and_revoke", "reset_circuit"]

    def has_add_permission(self, request) -> bool:
        return False  # connections are made by people authorizing at their broker

    def has_delete_permission(self, request, obj=None) -> bool:
        # A deleted row would skip revocation and the permission check and erase the history:
        # connections leave only through "Disconnect and revoke" (connection_disconnect).
        return False

    @admin.display(description="Shown as")
    def state_words(self, obj: Connection) -> str:
        """The state in the words the person's pages use (docs/pages.md, Glossary)."""
        from pages.presenters.cards import ProfileCache
        from pages.presenters.status import status_for

        return status_for(obj, profile=ProfileCache()[obj.broker_slug], now=timezone.now()).label

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Every field is read-only (changes go through the actions), so there is nothing to save.
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Broker", ordering="broker_slug")
    def broker(self, obj: Connection) -> str:
        return obj.broker_slug

    @admin.display(description="Account", ordering="account_number_masked")
    def account(self, obj: Connection) -> str:
        return obj.account_number_masked or obj.account_id

    @admin.display(description="Health", ordering="engine_state__health_score")
    def health(self, obj: Connection) -> str:
        if obj.health_score is None:
            return "-"
        return f"{obj.health_score} {obj.engine_state_get().get_quality_display()}".strip()

    # The engine's fields live on the connection's EngineState row: sortable through it.
    @admin.display(description="Last check at", ordering="engine_state__last_check_at")
    def last_check(self, obj: Connection):
        return obj.last_check_at

    # Empty while the connection is not checked (disconnected, needing a reconnect, failed).
    @admin.display(description="Next check at", ordering="engine_state__next_check_at", empty_value="Not checked")
    def next_check(self, obj: Connection):
        return obj.next_check_at

    @admin.display(description="Owner", ordering="user__email")
    def user_email(self, obj: Connection) -> str:
        if obj.user_id is None:
            return f"{obj.end_user} (partner app end user)"
        return obj.user.email

    @admin.display(description="Access token")
    def access_token_state(self, obj: Connection) -> str:
        return _token_phrase(bool(obj.access_token_sealed), obj.access_expires_at)

    @admin.display(description="Refresh token")
    def refresh_token_state(self, obj: Connection) -> str:
        return _token_phrase(bool(obj.refresh_token_sealed), obj.refresh_expires_at)

    # --- actions ---------------------------------------------------------------------

    @admin.action(description="Check now", permissions=["change"])
    def check_now(self, request, queryset):
        for connection in queryset:
            try:
                outcome = connection_check_now(connection, actor=request.user)
            except ValueError:
                result = f"skipped, the connection is {connection.get_status_display().lower()}"
                level = messages.WARNING
            except CheckBusy:
                result = "skipped, a worker is checking it right now"
                level = messages.WARNING
            else:
                connection.refresh_from_db()
                if outcome.ok:
                    result, level = f"heartbeat passed in {outcome.latency_ms} ms", messages.SUCCESS
                else:
                    detail = outcome.error.message if outcome.error else "no result"
                    result, level = f"now {connection.get_status_display().lower()}: {detail}", messages.WARNING
            admin_action_record(connection=connection, user=request.user, action="check now", result=result)
            self.message_user(request, f"{connection}: {result}", level)

    @admin.action(description="Refresh tokens now", permissions=["change"])
    def refresh_now(self, request, queryset):
        for connection in queryset:
            level = messages.WARNING
            if connection.status in INACTIVE_STATUSES:
                result = f"skipped, the connection is {connection.get_status_display().lower()}"
            else:
                try:
                    fresh = connection_refresh_now(connection, actor=request.user)
                except BrokerError as error:
                    result, level = f"refresh failed: {error.message}", messages.ERROR
                else:
                    result = _token_phrase(True, fresh.access_expires_at).replace("present", "refreshed")
                    level = messages.SUCCESS
            admin_action_record(connection=connection, user=request.user, action="refresh now", result=result)
            self.message_user(request, f"{connection}: {result}", level)

    @admin.action(description="Disconnect and revoke at the broker", permissions=["change"])
    def disconnect_and_revoke(self, request, queryset):
        refused = [c for c in queryset if not may_disconnect(request.user, c)]
        if refused:
            self.message_user(
                request,
                f"Nothing was disconnected: you may not disconnect other people's connections "
                f"({len(refused)} selected). Ask for the “{DISCONNECT_OTHERS}” permission.",
                messages.ERROR,
            )
            return
        for connection in queryset:
            outcome = connection_disconnect(connection, actor=request.user)
            admin_action_record(
                connection=connection, user=request.user, action="disconnect and revoke", result=outcome.message
            )
            self.message_user(
                request, f"{connection}: {outcome.message}", messages.SUCCESS if outcome.revoked else messages.WARNING
            )

    @admin.action(description="Reset the circuit breaker of the selected connections' brokers", permissions=["change"])
    def reset_circuit(self, request, queryset):
        connections = list(queryset)
        for slug in sorted({c.broker_slug for c in connections}):
            changed = circuit_reset(slug, actor=request.user)
            result = f"{slug} circuit closed" if changed else f"{slug} circuit was already closed"
            for connection in (c for c in connections if c.broker_slug == slug):
                admin_action_record(connection=connection, user=request.user, action="reset circuit", result=result)
            self.message_user(request, result, messages.SUCCESS)


@admin.register(ConnectionEvent)
class ConnectionEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "connection", "kind", "from_status", "to_status", "category", "actor", "message"]
    list_filter = ["kind", "category"]
    search_fields = ["connection__user__email", "connection__account_number_masked", "message"]
    list_select_related = ["connection", "actor"]
    date_hierarchy = "created_at"


# --- deleting a person -----------------------------------------------------------------------
# Connection.user is PROTECT, so a user with connections cannot be deleted. This action on the
# user admin does what deleting them would have meant, through the same service and permission
# check as "Disconnect and revoke", and keeps the rows and their history as the audit trail.
# It lives here, so accounts and connections never import each other; `PagesConfig.ready()`
# adds it to the user admin.


@admin.action(description="Disconnect (revoke) every connection and deactivate", permissions=["change"])
def disconnect_and_deactivate(modeladmin, request, queryset):
    connections = list(Connection.objects.filter(user__in=queryset).select_related("user"))
    refused = [c for c in connections if not may_disconnect(request.user, c)]
    if refused:
        modeladmin.message_user(
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
            modeladmin.log_change(request, user, "Deactivated after disconnecting every connection")
    modeladmin.message_user(request, f"Disconnected {len(connections)} connection(s); deactivated the selected users.")


def user_admin_action_add() -> None:
    """Put the action on the user admin. Called from `PagesConfig.ready()`: by then the admin has
    loaded every app's admin module (`django.contrib.admin` is ready first), accounts' included,
    whatever the order of the apps."""
    from django.contrib.auth import get_user_model

    user_admin = admin.site.get_model_admin(get_user_model())
    if disconnect_and_deactivate not in (user_admin.actions or []):
        user_admin.actions = [*(user_admin.actions or []), disconnect_and_deactivate]
