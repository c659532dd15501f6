from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pages import charts

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


def test_latency_chart_has_axes_time_labels_and_focusable_points():
    points = [(T0 + timedelta(minutes=i), 100.0 + i, True) for i in range(10)]
    svg = str(charts.latency_chart(points))
    assert ">0 ms<" in svg and " ms</text>" in svg  # the ms axis
    assert ">12:00:00<" in svg and ">12:09:00<" in svg  # first and last check times (short span: seconds)
    assert svg.count('tabindex="0"') == 10  # every point reachable by keyboard
    assert 'aria-label="12:03:00: 103 ms"' in svg and 'class="chart__value"' in svg


def test_latency_scale_survives_an_outlier_and_failed_checks_are_marked_on_the_axis():
    points = [(T0 + timedelta(minutes=i), 100.0, True) for i in range(20)]
    points[5] = (points[5][0], 30000.0, True)
    points[8] = (points[8][0], None, False)
    svg = str(charts.latency_chart(points))
    assert ">30,000 ms<" not in svg.split("<g")[0]  # the axis top is not the outlier
    assert "12:05:00: 30,000 ms (above the scale)" in svg  # its value is still there
    assert svg.count('data-failed="1"') == 1 and "12:08:00: check failed" in svg
    assert charts.robust_top([100.0] * 19 + [30000.0]) == 200.0


def test_empty_charts_say_no_data_yet():
    assert "No checks yet" in charts.latency_chart([])
    assert "No checks yet" in charts.uptime_chart([(T0, 0, 0), (T0 + timedelta(hours=1), 0, 0)])
