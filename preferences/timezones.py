"""Each person's time zone: activated per request, so pages and admin show their local time."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache

from django.utils import timezone


@lru_cache(maxsize=1)
def time_zone_choices() -> list[str]:
    return sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})


def time_zone_valid(name: str) -> bool:
    return name in set(time_zone_choices())


class UserTimeZoneMiddleware:
    """Activates the signed-in person's zone; UTC (the default) until it is known."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        name = getattr(user, "time_zone", "") if user is not None and user.is_authenticated else ""
        if name and time_zone_valid(name):
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def user_zone(user) -> zoneinfo.ZoneInfo:
    """The person's zone for things rendered outside a request (emails); UTC when unknown."""
    name = getattr(user, "time_zone", "") or ""
    return zoneinfo.ZoneInfo(name) if name and time_zone_valid(name) else zoneinfo.ZoneInfo("UTC")
