"""The engine's own admin (engine/admin.py): its lists answer at /admin/engine/…, sweep runs are read-only."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from engine.models import CircuitBreaker, SweepRun

pytestmark = pytest.mark.django_db


def test_the_engine_registers_its_own_models():
    assert {type(admin.site.get_model_admin(m)).__module__ for m in (CircuitBreaker, SweepRun)} == {"engine.admin"}


def test_breaker_and_sweep_run_lists_render(superadmin, admin_client_for):
    CircuitBreaker.objects.create(broker_slug="sandbox", state="open", failure_count=5)
    SweepRun.objects.create(started_at=timezone.now(), owner="worker-1")
    client = admin_client_for(superadmin)
    breakers = client.get(reverse("admin:engine_circuitbreaker_changelist"))
    runs = client.get(reverse("admin:engine_sweeprun_changelist"))
    assert breakers.status_code == runs.status_code == 200
    assert b"sandbox" in breakers.content and b"worker-1" in runs.content
    # Bookkeeping written by the workers: nobody adds or deletes it by hand.
    assert client.get(reverse("admin:engine_sweeprun_add")).status_code == 403
    assert client.get(reverse("admin:engine_circuitbreaker_add")).status_code == 403
