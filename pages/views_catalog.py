"""The broker catalog: what a person can connect now, what they can ask for, and (staff) what
needs setting up in admin."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from brokers.services import broker_catalog, broker_request_create, broker_requests_for_user
from pages.forms import CatalogSearchForm


def _matches(entry, query: str) -> bool:
    return not query or query in entry.profile.name.lower() or query in entry.profile.slug


def _admin_url(entry) -> str:
    if entry.app is not None:
        return reverse("admin:brokers_brokerapp_change", args=[entry.app.pk])
    return reverse("admin:brokers_brokerapp_add") + f"?broker_slug={entry.slug}"


@login_required
@require_GET
def catalog(request):
    form = CatalogSearchForm(request.GET or None)
    query = form.cleaned_query() if form.is_valid() else ""
    entries = broker_catalog()
    requested = broker_requests_for_user(user=request.user)
    available = [e for e in entries if e.configured and _matches(e, query)]
    unavailable = [
        {"entry": e, "requested": e.slug in requested, "admin_url": _admin_url(e) if request.user.is_staff else ""}
        for e in entries
        if not e.configured and _matches(e, query)
    ]
    context = {"available": available, "unavailable": unavailable, "form": form, "query": query}
    return render(request, "pages/catalog.html", context)


@login_required
@require_POST
def broker_request(request, slug: str):
    entry = next((e for e in broker_catalog() if e.slug == slug and not e.configured), None)
    if entry is None:
        raise Http404("No such broker to request")
    broker_request_create(user=request.user, profile=entry.profile)
    messages.success(request, f"Thanks: we told the administrators you would like {entry.profile.name}.")
    return redirect("connections:catalog")
