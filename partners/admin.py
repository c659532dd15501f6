from django import forms
from django.contrib import admin

from partners.models import ConnectSession, EndUser, PartnerApp


class PartnerAppForm(forms.ModelForm):
    logo_url = forms.URLField(
        assume_scheme="https", required=False, max_length=500, help_text="https only; shown on the hosted pages."
    )
    return_urls = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4}),
        required=False,
        help_text="One URL per line. A session's return_url must equal one of them exactly.",
    )

    class Meta:
        model = PartnerApp
        fields = ["name", "logo_url", "brand_colour", "return_urls"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["return_urls"] = "\n".join(self.instance.return_urls or [])

    def clean_return_urls(self) -> list[str]:
        urls = [line.strip() for line in (self.cleaned_data.get("return_urls") or "").splitlines() if line.strip()]
        validate = forms.URLField(assume_scheme="https").clean
        for url in urls:
            validate(url)
        return urls

    def clean_logo_url(self) -> str:
        url = self.cleaned_data.get("logo_url") or ""
        if url and not url.startswith("https://"):
            raise forms.ValidationError("The logo must be an https:// URL.")
        return url


@admin.register(PartnerApp)
class PartnerAppAdmin(admin.ModelAdmin):
    form = PartnerAppForm
    list_display = ["name", "brand_colour", "created_at"]
    search_fields = ["name"]


@admin.register(EndUser)
class EndUserAdmin(admin.ModelAdmin):
    list_display = ["external_id", "app", "display_name", "email", "created_at"]
    list_filter = ["app"]
    search_fields = ["external_id", "email", "display_name"]
    readonly_fields = ["app", "external_id", "created_at", "updated_at"]

    def has_add_permission(self, request) -> bool:
        return False  # apps create their end users through the API


@admin.register(ConnectSession)
class ConnectSessionAdmin(admin.ModelAdmin):
    list_display = ["id", "app", "end_user", "status", "expires_at", "opened_at", "completed_at", "last_failure"]
    list_filter = ["status", "app"]
    # Never the token: only its hash exists, and that is not shown either.
    exclude = ["token_hash", "browser_hash"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ConnectSession._meta.fields if f.name not in ("token_hash", "browser_hash")]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
