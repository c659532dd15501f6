from django.conf import settings
from django.contrib import admin
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView


def favicon(request):
    """Browsers ask for /favicon.ico whatever the page says: the brand mark."""
    return redirect(static("img/mark.svg"))


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="connections:dashboard", permanent=False)),
    path("favicon.ico", favicon),
    path("accounts/", include("allauth.urls")),
    path("settings/", include("preferences.urls")),
    path("admin/", admin.site.urls),
    path("connections/", include("pages.urls")),
    path("connect/", include("partners.urls")),
    path("", include("ops.urls")),
    path("api/v1/", include("api.urls")),
]
if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("sandbox.urls")))
