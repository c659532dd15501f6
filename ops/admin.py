import base64
import binascii

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache

from ops.models import Alert, WebhookDelivery, WebhookEndpoint
from ops.services import alert_acknowledge
from ops.webhooks import (
    EVENT_TYPES,
    SECRET_PREFIX,
    webhook_endpoint_rotate_secret,
    webhook_replay,
    webhook_retry_now,
    webhook_secret_new,
)


@never_cache
def secret_once_response(request, *, title: str, intro: str, items: list[dict], back_url: str, storage: str,
                         note: str = "") -> TemplateResponse:
    """A page that shows a new secret once (never stored in a message cookie or the session)."""
    return TemplateResponse(
        request,
        "admin/secret_once.html",
        {**admin.site.each_context(request), "title": title, "intro": intro, "items": items, "back_url": back_url,
         "storage": storage, "note": note},
    )


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["raised_at", "severity", "kind", "broker_slug", "message", "last_seen_at", "acknowledged_by",
                    "acknowledged_at", "cleared_at"]
    list_filter = [("cleared_at", admin.EmptyFieldListFilter), "severity", "kind", "broker_slug"]
    search_fields = ["message", "broker_slug"]
    readonly_fields = ["key", "kind", "broker_slug", "severity", "message", "value", "raised_at", "last_seen_at",
                       "acknowledged_at", "acknowledged_by", "cleared_at"]
    actions = ["acknowledge"]

    def has_add_permission(self, request) -> bool:
        return False  # raised by the evaluator only

    @admin.action(description="Acknowledge the selected alerts", permissions=["change"])
    def acknowledge(self, request, queryset):
        done = sum(alert_acknowledge(alert, user=request.user) for alert in queryset)
        self.message_user(request, f"Acknowledged {done} alert(s).", messages.SUCCESS)


class WebhookEndpointForm(forms.ModelForm):
    """The signing secret is write-only: never rendered. Blank on a new endpoint generates one
    (shown once); blank on an existing one keeps it. Rotate with the list action."""

    new_secret = forms.CharField(
        label="Signing secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only, Standard Webhooks format (whsec_ + base64 of 24 to 64 bytes). Leave blank: a new "
        "endpoint gets a generated secret, shown once; an existing one keeps its secret.",
    )
    url = forms.URLField(max_length=500, assume_scheme="https")
    event_types = forms.MultipleChoiceField(
        choices=[(t, t) for t in EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None checked means every event type.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "enabled", "event_types", "owner", "app"]

    def clean_url(self):
        from outbound.policy import outbound_url_problem

        url = self.cleaned_data["url"]
        if problem := outbound_url_problem(url):
            raise forms.ValidationError(f"The URL {problem}.")
        return url

    def clean_new_secret(self) -> str:
        value = self.cleaned_data.get("new_secret", "")
        if not value:
            return ""
        try:
            key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not value.startswith(SECRET_PREFIX) or not 24 <= len(key) <= 64:
            raise forms.ValidationError("Use the format whsec_ followed by base64 of 24 to 64 random bytes.")
        return value

    def save(self, commit=True):
        endpoint = super().save(commit=False)
        self.generated_secret = ""
        if self.cleaned_data.get("new_secret"):
            endpoint.secret = self.cleaned_data["new_secret"]
        elif not endpoint.secret_sealed:
            endpoint.secret = self.generated_secret = webhook_secret_new()
        if endpoint.enabled and endpoint.disabled_at:
            endpoint.disabled_at, endpoint.disabled_reason = None, ""  # enabled again by an admin
        if commit:
            endpoint.save()
        return endpoint


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ["created_at", "event", "status", "attempts", "response_status", "last_error", "delivered_at"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    ordering = ["-created_at"]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["__str__", "url", "enabled", "secret_status", "event_types", "last_success_at", "disabled_reason"]
    list_filter = ["enabled"]
    readonly_fields = ["secret_status", "last_success_at", "disabled_at", "disabled_reason", "created_at",
                       "updated_at"]
    fields = ["name", "url", "enabled", "event_types", "owner", "app", "secret_status", "new_secret", "last_success_at",
              "disabled_at", "disabled_reason", "created_at", "updated_at"]
    raw_id_fields = ["owner"]
    inlines = [WebhookDeliveryInline]
    actions = ["rotate_secret"]

    @admin.display(description="Signing secret")
    def secret_status(self, obj: WebhookEndpoint) -> str:
        if not (obj.pk and obj.secret_sealed):
            return "not set"
        if obj.previous_secret_sealed and obj.previous_secret_expires_at:
            return f"set; the previous secret also signs until {obj.previous_secret_expires_at:%Y-%m-%d %H:%M} UTC"
        return "set"

    def response_add(self, request, obj, post_url_continue=None):
        form_secret = getattr(self, "_generated_secret", "")
        if form_secret:
            return secret_once_response(
                request,
                title="Webhook endpoint secret",
                intro=f"The endpoint {obj} was added with this signing secret. Configure it in the receiver "
                "(Standard Webhooks: Webhook(secret).verify(body, headers)).",
                items=[{"label": "Signing secret", "value": form_secret}],
                back_url=reverse("admin:ops_webhookendpoint_change", args=[obj.pk]),
                storage="encrypted",
            )
        return super().response_add(request, obj, post_url_continue)

    def save_form(self, request, form, change):
        endpoint = super().save_form(request, form, change)
        self._generated_secret = getattr(form, "generated_secret", "")
        return endpoint

    @admin.action(description="Rotate the signing secret (the old one keeps signing for a day)",
                  permissions=["change"])
    def rotate_secret(self, request, queryset):
        items = [{"label": f"{endpoint} ({endpoint.url})", "value": webhook_endpoint_rotate_secret(endpoint)}
                 for endpoint in queryset]
        return secret_once_response(
            request,
            title="New webhook secrets",
            intro="Each endpoint now signs with its new secret and, until the rotation period ends, also with the "
            "old one (two v1 signatures): update the receivers in that time.",
            items=items,
            back_url=reverse("admin:ops_webhookendpoint_changelist"),
            storage="encrypted",
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "event", "endpoint", "status", "attempts", "response_status", "next_attempt_at",
                    "delivered_at", "last_error"]
    list_filter = ["status", "event", "endpoint"]
    search_fields = ["connection_id", "event_id"]
    list_select_related = ["endpoint"]
    readonly_fields = ["endpoint", "event", "event_id", "connection_id", "payload", "status", "attempts",
                       "response_status", "next_attempt_at", "delivered_at", "last_error", "created_at"]
    readonly_fields = [*readonly_fields, "first_attempt_at"]
    actions = ["retry_now", "replay"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Replay the selected deliveries (send again, even if delivered)", permissions=["change"])
    def replay(self, request, queryset):
        done = sum(webhook_replay(d) for d in queryset)
        self.message_user(request, f"{done} delivery(ies) will be sent again with the same webhook-id.")

    @admin.action(description="Retry the selected deliveries now", permissions=["change"])
    def retry_now(self, request, queryset):
        done = sum(webhook_retry_now(d) for d in queryset)
        self.message_user(request, f"{done} delivery(ies) queued again; delivered ones are never re-sent.")
