from django import forms
from django.contrib import admin, messages
from django.urls import reverse

from api.models import ApiAuditEntry, Scope, ServiceKey
from api.services import (
    service_key_changed,
    service_key_grant_problems,
    service_key_reach,
    service_key_revoke,
    service_key_set_secret,
)
from ops.admin import secret_once_response
from ops.client_address import client_address


class ServiceKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple)
    broker_slugs = forms.MultipleChoiceField(
        choices=(), required=False, widget=forms.CheckboxSelectMultiple, label="Brokers",
        help_text="None checked: every broker.",
    )

    class Meta:
        model = ServiceKey
        fields = ["name", "scopes", "broker_slugs", "users", "all_users", "app", "expires_at", "rate_limit_per_minute"]
        help_texts = {
            "users": "None selected: no connection at all (unless “every user's connections” is ticked).",
            "app": "A partner app's key covers exactly that app's end users' connections (users do not apply).",
            "expires_at": "Required with tokens:read or broker:call.",
        }

    # Set by ServiceKeyAdmin.get_form: who is saving, for the grant rules (api.services).
    actor = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from brokers.registry import all_profiles

        self.fields["broker_slugs"].choices = [(p.slug, p.name) for p in all_profiles()]

    def clean(self):
        cleaned = super().clean()
        problems = service_key_grant_problems(
            actor=self.actor, scopes=cleaned.get("scopes") or [], all_users=bool(cleaned.get("all_users")),
            expires_at=cleaned.get("expires_at"),
        )
        if cleaned.get("app") and (cleaned.get("users") or cleaned.get("all_users")):
            problems.append("A partner app's key covers its app's end users only: leave users and every-user unticked.")
        if problems:
            raise forms.ValidationError(problems)
        return cleaned


@admin.register(ServiceKey)
class ServiceKeyAdmin(admin.ModelAdmin):
    form = ServiceKeyForm
    list_display = ["name", "prefix", "scopes", "broker_slugs", "expires_at", "revoked_at", "last_used_at",
                    "created_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    filter_horizontal = ["users"]
    readonly_fields = ["prefix", "revoked_at", "last_used_at", "created_by", "created_at"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        form.actor = request.user
        return form

    def get_fields(self, request, obj=None):
        fields = ["name", "scopes", "broker_slugs", "users", "all_users", "app", "expires_at", "rate_limit_per_minute"]
        return fields + (["prefix", "revoked_at", "last_used_at", "created_by", "created_at"] if obj else [])

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: the audit trail keeps pointing at the key

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            self._plaintext = service_key_set_secret(obj)
        else:
            obj.reach_before = service_key_reach(ServiceKey.objects.get(pk=obj.pk))
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)  # the users are saved here
        key = form.instance
        service_key_changed(key, before=getattr(key, "reach_before", None) if change else None, actor=request.user,
                            remote_addr=client_address(request) or None)

    def response_add(self, request, obj, post_url_continue=None):
        return secret_once_response(
            request,
            title="New service key",
            intro=f"The service key {obj.name} was created with the scopes {', '.join(obj.scopes)}. Send it as "
            "Authorization: Bearer <key>.",
            items=[{"label": "Service key", "value": self._plaintext}],
            back_url=reverse("admin:api_servicekey_changelist"),
            storage="only as a hash",
        )

    @admin.action(description="Revoke the selected keys", permissions=["change"])
    def revoke(self, request, queryset):
        done = sum(service_key_revoke(key) for key in queryset)
        self.message_user(request, f"Revoked {done} key(s); they get 401 from now on.", messages.SUCCESS)


@admin.register(ApiAuditEntry)
class ApiAuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "key_name", "action", "connection_id", "method", "path", "status_code", "result"]
    list_filter = ["action", "status_code", "key"]
    search_fields = ["connection_id", "key_name", "path"]
    readonly_fields = [f.name for f in ApiAuditEntry._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
