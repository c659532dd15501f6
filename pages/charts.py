"""Charts drawn on the server as small inline SVGs (no chart library, nothing to load).

Each function returns safe markup with a text alternative (`role="img"` and a title), so
the chart is never the only way to read the number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

OK_COLOR = "#1f9d55"
BAD_COLOR = "#d64545"
EMPTY_COLOR = "#d9dde5"
LINE_COLOR = "#3b5bdb"


def _svg(*, width: int, height: int, label: str, body: str, css_class: str, stretch: bool = True) -> SafeString:
    # Bars may stretch to the card's width; charts with text keep their proportions.
    return format_html(
        '<svg class="{}" viewBox="0 0 {} {}" width="100%" {} role="img" '
        'aria-label="{}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        css_class,
        width,
        height,
        mark_safe(f'height="{height}" preserveAspectRatio="none"' if stretch else ""),  # noqa: S308 - numbers only
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


def _nice_ceiling(value: float) -> float:
    """The next 1, 2, 2.5 or 5 x 10^n at or above value (axis tops people can read)."""
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        top = step * 10**exponent
        if top >= value:
            return float(top)
    return float(10 ** (exponent + 1))


def robust_top(values: Sequence[float]) -> float:
    """The scale's top: the larger of 1.5x the 90th percentile and 2x the median, unless the
    maximum is below that. One 30 s answer then sits clipped at the top (with its real value
    in its label) instead of flattening every other point to the floor."""
    ordered = sorted(values)
    n = len(ordered)
    p90 = ordered[min(n - 1, int(0.9 * (n - 1) + 0.5))]
    median = ordered[n // 2]
    return _nice_ceiling(min(ordered[-1], max(1.5 * p90, 2 * median, 1.0)))


def _time(moment: datetime, *, seconds: bool = False) -> str:
    local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
    return f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"


def _empty(width: int, height: int, text: str, css_class: str) -> SafeString:
    body = (
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="none" stroke="{EMPTY_COLOR}" '
        f'stroke-dasharray="4 4"/><text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle" '
        f'class="chart__empty" fill="#5b6473">{escape(text)}</text>'
    )
    return _svg(width=width, height=height, label=text, body=body, css_class=css_class, stretch=False)


def latency_chart(points: Sequence[tuple], *, width: int = 600, height: int = 160) -> SafeString:
    """Latency (ms) of each check over time, with a ms axis, time labels, failed checks as red
    marks on the time axis (they have no latency: the line breaks there), a scale that
    survives outliers, and every point focusable (Tab) with its value shown.

    `points`: (checked_at, latency_ms or None) or (checked_at, latency_ms, ok), oldest first."""
    rows = [(p[0], p[1], p[2] if len(p) > 2 else p[1] is not None) for p in points]
    values = [v for _, v, ok in rows if ok and v is not None]
    failures = sum(1 for _, _, ok in rows if not ok)
    if not rows:
        return _empty(width, height, "No checks yet: latency appears after the first check.", "chart chart--latency")
    plot = _LatencyPlot(width=width, height=height, top=robust_top(values) if values else 1.0, n=len(rows))
    body = [*_latency_axes(plot, rows), *_latency_lines(plot, rows)]
    body += [_latency_point(plot, i, when, v, ok) for i, (when, v, ok) in enumerate(rows)]
    return _svg(
        width=width,
        height=height,
        label=_latency_label(plot.n, values, failures),
        body="".join(body),
        css_class="chart chart--latency",
        stretch=False,
    )


@dataclass(frozen=True)
class _LatencyPlot:
    """Where latency_chart draws: the plot area inside its axes, and the scale's top (ms)."""

    width: int
    height: int
    top: float
    n: int  # checks drawn
    left: int = 52
    right: int = 8
    top_pad: int = 10
    bottom: int = 28

    @property
    def plot_w(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_h(self) -> int:
        return self.height - self.top_pad - self.bottom

    def x_at(self, i: int) -> float:
        n = self.n
        return self.left + self.plot_w * (i / (n - 1) if n > 1 else 0.5)

    def y_at(self, v: float) -> float:
        return self.top_pad + self.plot_h * (1 - min(v, self.top) / self.top)


def _latency_axes(plot: _LatencyPlot, rows: list[tuple]) -> list[str]:
    """The ms axis (0, half, top, with grid lines) and the first, middle and last check times."""
    left, width, right, n = plot.left, plot.width, plot.right, plot.n
    body = []
    for tick in (0.0, plot.top / 2, plot.top):
        y = plot.y_at(tick)
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{EMPTY_COLOR}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="chart__tick">{tick:,.0f} ms</text>'
        )
    # with seconds when the checks span under 10 minutes
    short = (rows[-1][0] - rows[0][0]).total_seconds() < 600
    for i in sorted({0, (n - 1) // 2, n - 1}):
        anchor = "start" if i == 0 and n > 1 else "end" if i == n - 1 and n > 1 else "middle"
        body.append(
            f'<text x="{plot.x_at(i):.1f}" y="{plot.height - 8}" text-anchor="{anchor}" class="chart__tick">'
            f"{_time(rows[i][0], seconds=short)}</text>"
        )
    return body


def _latency_lines(plot: _LatencyPlot, rows: list[tuple]) -> list[str]:
    """The latency line, broken at each failed check (it has no latency)."""
    segments, current = [], []
    for i, (_, v, ok) in enumerate(rows):
        if not ok or v is None:
            if current:
                segments.append(current)
            current = []
            continue
        current.append(f"{plot.x_at(i):.1f},{plot.y_at(v):.1f}")
    if current:
        segments.append(current)
    return [
        f'<polyline points="{" ".join(seg)}" fill="none" stroke="{LINE_COLOR}" stroke-width="2"/>'
        for seg in segments
        if len(seg) > 1
    ]


def _latency_point(plot: _LatencyPlot, i: int, when: datetime, v: float | None, ok: bool) -> str:
    """One check, focusable with its value: a red mark on the time axis when it failed, a dot
    (an arrow at the top when above the scale) when it passed."""
    x, lo, hi = plot.x_at(i), plot.left, plot.width - plot.right
    axis_y = plot.top_pad + plot.plot_h
    stamp = timezone.localtime(when).strftime("%H:%M:%S") if timezone.is_aware(when) else f"{when:%H:%M:%S}"
    if not ok:
        text = f"{stamp}: check failed"
        return (
            f'<g class="chart__point chart__point--failed" tabindex="0" role="img" aria-label="{text}" '
            f'data-failed="1"><rect x="{x - 2:.1f}" y="{axis_y - 6:.1f}" width="4" height="12" fill="{BAD_COLOR}"/>'
            f"<title>{text}</title>{_value_label(x, axis_y - 10, 'failed', lo, hi)}</g>"
        )
    clipped = v > plot.top
    text = f"{stamp}: {v:,.0f} ms" + (" (above the scale)" if clipped else "")
    y = plot.y_at(v)
    marker = (
        f'<path d="M{x - 4:.1f},{y + 6:.1f} L{x:.1f},{y - 1:.1f} L{x + 4:.1f},{y + 6:.1f} Z" fill="{LINE_COLOR}"/>'
        if clipped
        else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{LINE_COLOR}"/>'
    )
    return (
        f'<g class="chart__point" tabindex="0" role="img" aria-label="{text}">{marker}<title>{text}</title>'
        f"{_value_label(x, y - 8, f'{v:,.0f} ms', lo, hi)}</g>"
    )


def _latency_label(n: int, values: list[float], failures: int) -> str:
    """The chart's text alternative."""
    if values:
        return (
            f"Latency of the last {n} checks: min {min(values):,.0f} ms, max {max(values):,.0f} ms, "
            f"last {values[-1]:,.0f} ms; {failures} failed"
        )
    return f"Latency of the last {n} checks: none passed, {failures} failed"


def _value_label(x: float, y: float, text: str, lo: float, hi: float) -> str:
    """The value shown beside a point on hover or keyboard focus (CSS: .chart__point:focus)."""
    x = min(max(x, lo + 30), hi - 30)
    y = max(y, 12)
    return f'<text class="chart__value" x="{x:.1f}" y="{y:.1f}" text-anchor="middle">{escape(text)}</text>'


def uptime_chart(buckets: Sequence[tuple[datetime, int, int]], *, width: int = 600, height: int = 110) -> SafeString:
    """A column per bucket (hour), its height the share of passed checks, with a % axis and
    time labels; `buckets` oldest first as (start, checks, successes). Hours without checks
    are grey stubs."""
    checks_total = sum(b[1] for b in buckets)
    if not checks_total:
        return _empty(width, height, "No checks yet: uptime appears after the first check.", "chart chart--uptime")
    left, right, top_pad, bottom = 40, 4, 8, 24
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    n = max(1, len(buckets))
    slot = plot_w / n
    body, ok_total = [], 0
    for tick, label in ((0.0, "0%"), (0.5, "50%"), (1.0, "100%")):
        y = top_pad + plot_h * (1 - tick)
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{EMPTY_COLOR}"/>'
            f'<text x="{left - 5}" y="{y + 4:.1f}" text-anchor="end" class="chart__tick">{label}</text>'
        )
    for i, (start, checks, successes) in enumerate(buckets):
        x = left + i * slot
        ok_total += successes
        if i in (0, n // 2, n - 1):
            anchor = "start" if i == 0 else "end" if i == n - 1 else "middle"
            tx = x if i == 0 else x + slot if i == n - 1 else x + slot / 2
            body.append(
                f'<text x="{tx:.1f}" y="{height - 6}" text-anchor="{anchor}" class="chart__tick">{_time(start)}</text>'
            )
        if not checks:
            body.append(
                f'<rect x="{x:.1f}" y="{top_pad + plot_h - 3}" width="{max(1.0, slot - 1):.1f}" height="3" '
                f'fill="{EMPTY_COLOR}"/>'
            )
            continue
        share = successes / checks
        h = max(3.0, plot_h * share)
        color = OK_COLOR if share >= 0.99 else BAD_COLOR if share < 0.9 else "#e0a100"
        text = f"{_time(start)}: {successes} of {checks} checks passed"
        body.append(
            f'<g class="chart__point" tabindex="0" role="img" aria-label="{text}">'
            f'<rect x="{x:.1f}" y="{top_pad + plot_h - h:.1f}" width="{max(1.0, slot - 1):.1f}" height="{h:.1f}" '
            f'fill="{color}"/><title>{text}</title>'
            f"{_value_label(x + slot / 2, top_pad + plot_h - h - 4, f'{successes}/{checks}', left, width - right)}</g>"
        )
    label = f"Uptime by hour: {ok_total} of {checks_total} checks passed ({100 * ok_total / checks_total:.1f}%)"
    return _svg(
        width=width, height=height, label=label, body="".join(body), css_class="chart chart--uptime", stretch=False
    )
