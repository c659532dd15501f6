"""How long ago, how long: "40 s", "12 min ago", "just now". The words of every page, email and
the admin (pages.presenters.phrases builds on them), here so that the engine's monitoring report
reads the same without importing pages."""

from __future__ import annotations

from datetime import datetime


def duration_phrase(seconds: float) -> str:
    """40 s, 12 min, 5 h, 2 days: the largest unit that reads naturally, rounded down."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    days = seconds // 86400
    return f"{days} days"


def ago_phrase(moment: datetime | None, *, now: datetime) -> str:
    if moment is None:
        return "never"
    delta = (now - moment).total_seconds()
    if delta < 5:
        return "just now"
    return f"{duration_phrase(delta)} ago"
