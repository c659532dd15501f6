"""Admin for the engine's bookkeeping: circuit breakers (with their reset action) and sweep runs.

The reset calls the same service as the Connection admin's "Reset circuit" (`engine.circuit.circuit_reset`)
and records an `admin_action` event on each connection waiting out the outage.
"""

from __future__ import annotations

from django.contrib import admin, messages

from common.admin_mixins import ReadOnlyAdminMixin
from connections.admin_record import admin_action_record
from connections.models import Connection, ConnectionStatus
from engine.circuit import circuit_reset
from engine.models import CircuitBreaker, SweepRun


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(admin.ModelAdmin):
    list_display = [
        "broker_slug",
        "state",
        "failure_count",
        "probe_failures",
        "opened_at",
        "next_probe_at",
        "last_error_message",
    ]
    list_filter = ["state"]
    readonly_fields = list_display + ["updated_at"]
    actions = ["reset"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Reset (close) the selected circuit breakers", permissions=["change"])
    def reset(self, request, queryset):
        for breaker in queryset:
            changed = circuit_reset(breaker.broker_slug, actor=request.user)
            result = f"{breaker.broker_slug} circuit closed" if changed else f"{breaker.broker_slug} was already closed"
            # The connections waiting out this broker's outage carry the record.
            for connection in Connection.objects.filter(
                broker_slug=breaker.broker_slug, status=ConnectionStatus.BROKER_OUTAGE
            ):
                admin_action_record(connection=connection, user=request.user, action="reset circuit", result=result)
            self.log_change(request, breaker, f"reset by {request.user.email}: {result}")
            self.message_user(request, result, messages.SUCCESS)


@admin.register(SweepRun)
class SweepRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "started_at",
        "owner",
        "finished_at",
        "batches",
        "claimed",
        "checked",
        "refreshed",
        "failed",
        "deferred",
        "max_lag_seconds",
        "duration_ms",
    ]
    date_hierarchy = "started_at"
