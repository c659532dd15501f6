import copy

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import models
from django.forms.models import construct_instance

from brokers.custom import RESOLVED_FORM_FIELDS, custom_broker_resolve
from brokers.models import BrokerApp, BrokerRequest, CustomBroker, DiscoveredMetadata
from brokers.registry import UnknownBroker, all_profiles, get_profile
from brokers.services import (
    broker_app_clear_config_problem,
    broker_app_is_configured,
    broker_app_rotation_summary,
)


def broker_choices() -> list[tuple[str, str]]:
    return [(p.slug, p.name) for p in all_profiles()]


class BrokerAppForm(forms.ModelForm):
    """The client secret is write-only: never rendered, blank keeps the stored one."""

    broker_slug = forms.ChoiceField(label="Broker", choices=broker_choices)
    new_client_secret = forms.CharField(
        label="Client secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: not set yet.",
    )
    clear_client_secret = forms.BooleanField(label="Remove the stored secret", required=False)
    redirect_uri = forms.URLField(
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text="Leave blank for {SITE_URL}/connections/callback/<broker>/.",
    )

    class Meta:
        model = BrokerApp
        fields = ["broker_slug", "environment", "client_id", "redirect_uri", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        app = self.instance
        # One "Client secret" row: whether one is stored is said here, not on a second row.
        if app.pk and app.has_client_secret:
            self.fields["new_client_secret"].help_text = (
                "A secret is stored (write-only, never shown). Leave blank to keep it."
            )
        # Admin renders help text as HTML: a literal <broker> vanished ("…/callback//.").
        callback = f"{settings.SITE_URL.rstrip('/')}/connections/callback/"
        if app.broker_slug:
            example = f"{callback}{app.broker_slug}/"
        else:
            example = f"{callback}&lt;broker&gt;/, e.g. {callback}sandbox/"
        self.fields["redirect_uri"].help_text = f"Leave blank for {example}."

    def clean(self):
        cleaned = super().clean()
        slug, environment = cleaned.get("broker_slug"), cleaned.get("environment")
        if slug and environment:
            try:
                profile = get_profile(slug)
            except UnknownBroker:
                self.add_error("broker_slug", "Unknown broker.")
            else:
                if profile.api_base_urls and environment not in profile.api_base_urls:
                    self.add_error("environment", f"{profile.name} has no {environment} environment.")
        return cleaned

    def save(self, commit=True):
        app = super().save(commit=False)
        if self.cleaned_data.get("clear_client_secret"):
            app.client_secret = ""
        elif self.cleaned_data.get("new_client_secret"):
            app.client_secret = self.cleaned_data["new_client_secret"]
        if commit:
            app.save()
        return app


@admin.register(BrokerApp)
class BrokerAppAdmin(admin.ModelAdmin):
    form = BrokerAppForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = [
        "broker_slug", "environment", "enabled", "configured", "secret_status", "refresh_tokens", "config_problem"
    ]
    list_filter = ["broker_slug", "environment", "enabled"]
    readonly_fields = ["effective_redirect_uri", "config_problem", "config_problem_at", "refresh_tokens",
                       "refresh_rotation_seen_at", "refresh_kept_count", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["broker_slug", "environment", "enabled"]}),
        ("Credentials", {"fields": ["client_id", "new_client_secret", "clear_client_secret"]}),
        ("Redirect", {"fields": ["redirect_uri", "effective_redirect_uri"]}),
        ("Problems", {"fields": ["config_problem", "config_problem_at"]}),
        ("Refresh tokens (learned from the broker's answers)",
         {"fields": ["refresh_tokens", "refresh_rotation_seen_at", "refresh_kept_count"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    actions = ["clear_config_problem"]

    @admin.display(description="Client secret")
    def secret_status(self, obj: BrokerApp) -> str:
        return "set" if obj.pk and obj.has_client_secret else "not set"

    @admin.display(description="Refresh tokens")
    def refresh_tokens(self, obj: BrokerApp) -> str:
        return broker_app_rotation_summary(obj) if obj.broker_slug else ""

    @admin.display(boolean=True, description="Configured")
    def configured(self, obj: BrokerApp) -> bool:
        return broker_app_is_configured(obj) and not obj.config_problem

    @admin.display(description="Redirect URI in use")
    def effective_redirect_uri(self, obj: BrokerApp) -> str:
        return obj.effective_redirect_uri if obj.broker_slug else ""

    @admin.action(description="Clear the configuration problem (after fixing the credentials)")
    def clear_config_problem(self, request, queryset):
        for app in queryset:
            broker_app_clear_config_problem(app)
        messages.success(request, f"Cleared {queryset.count()} app(s).")

    def save_model(self, request, obj, form, change):
        # New credentials supersede a recorded invalid_client problem.
        if change and obj.config_problem and {"client_id", "new_client_secret"} & set(form.changed_data):
            obj.config_problem, obj.config_problem_at = "", None
        super().save_model(request, obj, form, change)


def _https_urls(db_field, **kwargs):
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class CustomBrokerForm(forms.ModelForm):
    """Checks the broker as brokerlink will serve it and fills the endpoints left blank from
    discovery (RFC 8414) before the row is saved."""

    class Meta:
        model = CustomBroker
        formfield_callback = _https_urls
        fields = [
            "slug", "name", "enabled", "discovery_url", "authorize_url", "token_url", "revoke_url", "revocation_scope",
            "manual_revoke_url", "issuer", "api_base_url", "paper_api_base_url", "heartbeat_path", "scopes",
            "scope_separator", "token_auth_method", "pkce", "issues_refresh_token", "rotates_refresh_token",
            "access_ttl", "refresh_ttl", "absolute_cap", "require_iss", "pkce_opt_out", "identity_id",
            "identity_label", "identity_number", "heartbeat_interval_seconds", "refresh_margin_seconds",
            "refresh_deadline_seconds", "refresh_reuse_grace_seconds", "backoff_kind", "backoff_base_seconds",
            "backoff_cap_seconds", "backoff_max_attempts", "circuit_failure_threshold", "circuit_cooldown_seconds",
        ]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        broker = construct_instance(self, copy.copy(self.instance))
        custom_broker_resolve(broker)  # ValidationError keyed by field
        for name in RESOLVED_FORM_FIELDS:
            cleaned[name] = getattr(broker, name)
        return cleaned


@admin.register(CustomBroker)
class CustomBrokerAdmin(admin.ModelAdmin):
    form = CustomBrokerForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["slug", "name", "enabled", "token_url", "token_auth_method", "pkce"]
    list_filter = ["enabled"]
    search_fields = ["slug", "name"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "enabled"]}),
        ("Endpoints", {"fields": ["discovery_url", "authorize_url", "token_url", "revoke_url", "revocation_scope",
                                  "manual_revoke_url", "issuer"],
                       "description": "Give a discovery URL (RFC 8414) to fill in the endpoints left blank."}),
        ("Account API", {"fields": ["api_base_url", "paper_api_base_url", "heartbeat_path"]}),
        ("Identity", {"fields": ["identity_id", "identity_label", "identity_number"],
                      "description": "Where the account is in the heartbeat answer, when it is not in sub, id, "
                                     "account_id, account_number or a list of accounts."}),
        ("OAuth", {"fields": ["scopes", "scope_separator", "token_auth_method", "pkce", "pkce_opt_out",
                              "require_iss"]}),
        ("Tokens", {"fields": ["issues_refresh_token", "rotates_refresh_token", "refresh_reuse_grace_seconds",
                               "access_ttl", "refresh_ttl", "absolute_cap"]}),
        ("Tuning", {"fields": ["heartbeat_interval_seconds", "refresh_margin_seconds", "refresh_deadline_seconds",
                               "backoff_kind", "backoff_base_seconds", "backoff_cap_seconds", "backoff_max_attempts",
                               "circuit_failure_threshold", "circuit_cooldown_seconds"],
                    "description": "Blank fields keep brokerlink's defaults."}),
    ]


@admin.register(DiscoveredMetadata)
class DiscoveredMetadataAdmin(admin.ModelAdmin):
    """Read-only: what each discovery URL last answered, kept for outages."""

    list_display = ["url", "fetched_at", "last_attempt_at", "last_error"]
    readonly_fields = ["url", "metadata", "fetched_at", "last_attempt_at", "last_error"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(BrokerRequest)
class BrokerRequestAdmin(admin.ModelAdmin):
    list_display = ["broker_slug", "user", "created_at", "staff_notified_at"]
    list_filter = ["broker_slug"]
    readonly_fields = ["broker_slug", "user", "created_at", "staff_notified_at"]

    def has_add_permission(self, request) -> bool:
        return False
