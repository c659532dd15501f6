"""URLconf of the standalone sandbox server: the sandbox alone, at the root."""

from django.urls import include, path

urlpatterns = [path("", include("sandbox.urls"))]
