"""Charts drawn on the server as small inline SVGs (no chart library, nothing to load).

Each function returns safe markup with a text alternative (`role="img"` and a title), so
the chart is never the only way to read the number.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

OK_COLOR = "#1f9d55"
BAD_COLOR = "#d64545"
EMPTY_COLOR = "#d9dde5"
LINE_COLOR = "#3b5bdb"


def _svg(*, width: int, height: int, label: str, body: str, css_class: str) -> SafeString:
    return format_html(
        '<svg class="{}" viewBox="0 0 {} {}" width="100%" height="{}" preserveAspectRatio="none" role="img" '
        'aria-label="{}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        css_class,
        width,
        height,
        height,
        label,
        label,
        mark_safe(body),  # noqa: S308 - built below from numbers and escaped text only
    )


def uptime_bar(checks: Sequence, *, slots: int = 30) -> SafeString:
    """One bar per check, oldest left, like a status page. `checks` is newest first (as stored);
    missing slots (a new connection) are drawn grey on the left."""
    recent = list(checks)[:slots][::-1]
    passed = sum(1 for c in recent if c.ok)
    failed = len(recent) - passed
    width, height, gap = slots * 6, 24, 2
    bars = []
    empty = slots - len(recent)
    for i in range(slots):
        x = i * 6
        if i < empty:
            bars.append(f'<rect x="{x}" y="0" width="{6 - gap}" height="{height}" rx="1" fill="{EMPTY_COLOR}"/>')
            continue
        check = recent[i - empty]
        color = OK_COLOR if check.ok else BAD_COLOR
        state = "passed" if check.ok else f"failed ({escape(check.category or 'error')})"
        when = check.checked_at.strftime("%Y-%m-%d %H:%M:%S")
        bars.append(
            f'<rect x="{x}" y="0" width="{6 - gap}" height="{height}" rx="1" fill="{color}" '
            f'data-ok="{int(check.ok)}"><title>{when}: {state}</title></rect>'
        )
    label = f"Last {len(recent)} checks: {passed} passed, {failed} failed" if recent else "No checks yet"
    return _svg(width=width, height=height, label=label, body="".join(bars), css_class="chart chart--uptime-bar")


def latency_chart(
    points: Sequence[tuple[datetime, float | None]], *, width: int = 600, height: int = 120
) -> SafeString:
    """A line of latency (ms) over time; points with no value (failed checks) break the line."""
    values = [v for _, v in points if v is not None]
    if not values:
        return _svg(
            width=width, height=height, label="No latency measured yet", body="", css_class="chart chart--latency"
        )
    top = max(values) * 1.15 or 1
    n = len(points)
    pad = 4

    def xy(i: int, v: float) -> str:
        x = pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)
        y = height - pad - (height - 2 * pad) * (v / top)
        return f"{x:.1f},{y:.1f}"

    segments, current = [], []
    for i, (_, v) in enumerate(points):
        if v is None:
            if current:
                segments.append(current)
            current = []
            continue
        current.append(xy(i, v))
    if current:
        segments.append(current)
    body = [
        f'<line x1="0" y1="{height - pad}" x2="{width}" y2="{height - pad}" stroke="{EMPTY_COLOR}" stroke-width="1"/>'
    ]
    for seg in segments:
        if len(seg) == 1:
            x, y = seg[0].split(",")
            body.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{LINE_COLOR}"/>')
        else:
            body.append(
                f'<polyline points="{" ".join(seg)}" fill="none" stroke="{LINE_COLOR}" stroke-width="2" '
                'vector-effect="non-scaling-stroke"/>'
            )
    label = f"Latency over {n} points: min {min(values):.0f} ms, max {max(values):.0f} ms, last {values[-1]:.0f} ms"
    return _svg(width=width, height=height, label=label, body="".join(body), css_class="chart chart--latency")


def uptime_chart(buckets: Sequence[tuple[datetime, int, int]], *, width: int = 600, height: int = 80) -> SafeString:
    """A column per bucket (hour), its height the share of passed checks; `buckets` oldest first
    as (start, checks, successes). Empty buckets are grey stubs."""
    n = max(1, len(buckets))
    slot = width / n
    body, checks_total, ok_total = [], 0, 0
    for i, (start, checks, successes) in enumerate(buckets):
        x = i * slot
        checks_total += checks
        ok_total += successes
        if not checks:
            body.append(
                f'<rect x="{x:.1f}" y="{height - 3}" width="{max(1.0, slot - 1):.1f}" height="3" fill="{EMPTY_COLOR}"/>'
            )
            continue
        share = successes / checks
        h = max(3.0, height * share)
        color = OK_COLOR if share >= 0.99 else BAD_COLOR if share < 0.9 else "#e0a100"
        body.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(1.0, slot - 1):.1f}" height="{h:.1f}" fill="{color}">'
            f"<title>{start:%Y-%m-%d %H:00}: {successes}/{checks} passed</title></rect>"
        )
    if checks_total:
        label = f"Uptime by hour: {ok_total} of {checks_total} checks passed ({100 * ok_total / checks_total:.1f}%)"
    else:
        label = "No uptime data yet"
    return _svg(width=width, height=height, label=label, body="".join(body), css_class="chart chart--uptime")
