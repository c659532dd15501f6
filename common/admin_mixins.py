"""Admin pieces more than one app's admin uses (not an installed app: nothing here is registered)."""

from __future__ import annotations


class ReadOnlyAdminMixin:
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
