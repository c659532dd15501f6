from django import forms
from django.contrib import admin, messages
from django.db import models

from ops.alerts import alert_acknowledge
from ops.models import Alert, WebhookDelivery, WebhookEndpoint
from ops.webhooks import EVENT_TYPES, webhook_retry_now


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
    """The signing secret is write-only: never rendered, blank keeps the stored one."""

    new_secret = forms.CharField(
        label="Signing secret",
        required=False,
        strip=True,
        min_length=16,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only, at least 16 characters. Leave blank to keep the current secret.",
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
        fields = ["name", "url", "enabled", "event_types"]

    def clean_url(self):
        from outbound.policy import outbound_url_problem

        url = self.cleaned_data["url"]
        if problem := outbound_url_problem(url):
            raise forms.ValidationError(f"The URL {problem}.")
        return url

    def clean(self):
        cleaned = super().clean()
        if not (self.instance.pk and self.instance.secret_sealed) and not cleaned.get("new_secret"):
            self.add_error("new_secret", "A new endpoint needs a signing secret.")
        return cleaned

    def save(self, commit=True):
        endpoint = super().save(commit=False)
        if self.cleaned_data.get("new_secret"):
            endpoint.secret = self.cleaned_data["new_secret"]
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
    list_display = ["__str__", "url", "enabled", "secret_status", "event_types"]
    list_filter = ["enabled"]
    readonly_fields = ["secret_status", "created_at", "updated_at"]
    fields = ["name", "url", "enabled", "event_types", "secret_status", "new_secret", "created_at", "updated_at"]
    inlines = [WebhookDeliveryInline]

    @admin.display(description="Signing secret")
    def secret_status(self, obj: WebhookEndpoint) -> str:
        return "set" if obj.pk and obj.secret_sealed else "not set"


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "event", "endpoint", "status", "attempts", "response_status", "next_attempt_at",
                    "delivered_at", "last_error"]
    list_filter = ["status", "event", "endpoint"]
    search_fields = ["connection_id", "event_id"]
    list_select_related = ["endpoint"]
    readonly_fields = ["endpoint", "event", "event_id", "connection_id", "payload", "status", "attempts",
                       "response_status", "next_attempt_at", "delivered_at", "last_error", "created_at"]
    actions = ["retry_now"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Retry the selected deliveries now", permissions=["change"])
    def retry_now(self, request, queryset):
        done = sum(webhook_retry_now(d) for d in queryset)
        self.message_user(request, f"{done} delivery(ies) queued again; delivered ones are never re-sent.")
