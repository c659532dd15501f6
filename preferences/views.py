"""The settings page: notifications (kinds, email, personal channels, a test) and time zone."""

from __future__ import annotations

import logging
from functools import partial

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from preferences.channels import ChannelInvalid
from preferences.forms import ChannelForm, NotificationSettingsForm, TimeZoneForm
from preferences.notify import (
    NotificationTestTooSoon,
    channel_create,
    notification_settings_for,
    notification_test_request,
)
from preferences.selectors import notification_channels_for, notification_test_has_target
from preferences.services import channel_remove as channel_remove_service
from preferences.services import time_zone_choose, time_zone_detected
from preferences.tasks import notification_test_send
from preferences.timezones import time_zone_valid

logger = logging.getLogger(__name__)


def _page(request, *, notifications_form=None, channel_form=None, time_zone_form=None, status=200):
    user = request.user
    context = {
        "notifications_form": notifications_form or NotificationSettingsForm(instance=notification_settings_for(user)),
        "channel_form": channel_form or ChannelForm(),
        "time_zone_form": time_zone_form or TimeZoneForm(initial={"time_zone": user.time_zone or "UTC"}),
        "channels": notification_channels_for(user),
        "notification_settings": notification_settings_for(user),
        "now": timezone.now(),
    }
    return render(request, "preferences/settings.html", context, status=status)


@login_required
@require_GET
def settings_page(request):
    return _page(request)


@login_required
@require_POST
def notifications_save(request):
    form = NotificationSettingsForm(request.POST, instance=notification_settings_for(request.user))
    if not form.is_valid():
        return _page(request, notifications_form=form, status=400)
    form.save()
    messages.success(request, "Notification settings saved.")
    return redirect("preferences:settings")


@login_required
@require_POST
def notification_test(request):
    """Answers at once with one generic sentence (never a per-channel verdict a caller could
    time or read as a port scan); the worker records each channel's outcome for its owner."""
    user = request.user
    if not notification_test_has_target(user):
        messages.warning(request, "Nothing to send to: email is off and you have no channels.")
        return redirect("preferences:settings")
    try:
        notification_test_request(user=user)
    except NotificationTestTooSoon:
        messages.warning(request, "A test was sent a moment ago: wait a minute before sending another.")
    else:
        transaction.on_commit(partial(_queue_test, user.pk))
        messages.success(request, "Test on its way: check your channels. Each one's result appears below.")
    return redirect("preferences:settings")


def _queue_test(user_id: int) -> None:
    try:
        notification_test_send.delay(user_id)
    except Exception:  # noqa: BLE001 - the queue is down: the list keeps showing "sending…"
        logger.warning("preferences.notification.test_not_queued", extra={"user_id": user_id})


@login_required
@require_POST
def channel_add(request):
    form = ChannelForm(request.POST)
    if form.is_valid():
        try:
            channel = channel_create(user=request.user, name=form.cleaned_data["name"], url=form.cleaned_data["url"])
        except ChannelInvalid as exc:
            form.add_error("url", str(exc))
        else:
            messages.success(request, f"Channel “{channel.name}” added.")
            return redirect("preferences:settings")
    return _page(request, channel_form=form, status=400)


@login_required
@require_POST
def channel_remove(request, channel_id):
    channel = channel_remove_service(user=request.user, channel_id=channel_id)
    if channel is None:
        raise Http404("No NotificationChannel matches the given query.")
    messages.success(request, f"Channel “{channel.name}” removed.")
    return redirect("preferences:settings")


@login_required
@require_POST
def time_zone_save(request):
    """The settings form, or the browser's own zone on a first visit (`detected=1`, which never
    overrides a zone the person chose)."""
    name = request.POST.get("time_zone", "")
    detected = request.POST.get("detected") == "1"
    if not time_zone_valid(name):
        if detected:
            return HttpResponse(status=400)
        return _page(request, time_zone_form=TimeZoneForm(request.POST), status=400)
    if detected:
        time_zone_detected(user=request.user, name=name)
        return HttpResponse(status=204)
    time_zone_choose(user=request.user, name=name)
    messages.success(request, f"Time zone set to {name.replace('_', ' ')}.")
    return redirect("preferences:settings")
