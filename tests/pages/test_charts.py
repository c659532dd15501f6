from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connections import charts

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@dataclass
class Check:
    ok: bool
    checked_at: datetime
    category: str = ""


def test_uptime_bar_draws_one_bar_per_check_oldest_left():
    checks = [Check(ok=i != 0, checked_at=T0 - timedelta(minutes=i), category="network") for i in range(5)]
    svg = str(charts.uptime_bar(checks, slots=10))
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert svg.count("<rect") == 10
    assert svg.count('data-ok="1"') == 4 and svg.count('data-ok="0"') == 1
    assert "Last 5 checks: 4 passed, 1 failed" in svg
    # newest (the failed one) is the right-most bar
    assert svg.rindex('data-ok="0"') > svg.rindex('data-ok="1"')


def test_uptime_bar_without_checks():
    assert "No checks yet" in charts.uptime_bar([], slots=3)


def test_latency_chart_breaks_the_line_at_failures():
    points = [(T0 + timedelta(minutes=i), None if i == 2 else 100.0 + i) for i in range(5)]
    svg = str(charts.latency_chart(points))
    assert svg.count("<polyline") == 2
    assert "min 100 ms, max 104 ms, last 104 ms" in svg


def test_uptime_chart_columns_and_label():
    svg = str(charts.uptime_chart([(T0, 10, 10), (T0 + timedelta(hours=1), 0, 0), (T0 + timedelta(hours=2), 10, 5)]))
    assert svg.count("<rect") == 3
    assert "15 of 20 checks passed (75.0%)" in svg


def test_text_is_escaped():
    svg = str(charts.uptime_bar([Check(ok=False, checked_at=T0, category="<script>")]))
    assert "<script>" not in svg
