"""The stored health score is steady: a latency wobble moves nothing a person sees (issue 27)."""

import pytest

from engine.health import SCORE_STEP, quality_for, score_steady


@pytest.mark.parametrize(
    ("shown", "computed", "exact", "stored"),
    [
        (None, 93, False, 93),  # the first score shows as computed
        (93, None, False, None),  # back to "not enough data" (a reconnect) shows at once
        (None, None, False, None),
        (93, 93, False, 93),
        (93, 91, False, 93),  # latency wobble: kept
        (93, 96, False, 93),
        (93, 93 - (SCORE_STEP - 1), False, 93),
        (93, 93 + (SCORE_STEP - 1), False, 93),
        (93, 93 - SCORE_STEP, False, 93 - SCORE_STEP),  # a real move shows as it is
        (93, 100, False, 100),
        (93, 60, False, 60),
        (20, 80, False, 80),  # back from the needs-you cap
        (22, 20, True, 20),  # the cap is exact, however small the move
        (86, 83, False, 86),  # at a band edge: no flapping between Excellent and Good
    ],
)
def test_score_steady(shown, computed, exact, stored):
    assert score_steady(shown, computed, exact=exact) == stored


def test_a_wobbling_score_keeps_its_band():
    shown = None
    bands = set()
    for computed in [86, 84, 85, 83, 86, 84, 87, 83]:
        shown = score_steady(shown, computed)
        bands.add(quality_for(shown))
    assert shown == 86
    assert bands == {"excellent"}


def test_a_steady_decline_is_followed():
    shown = 95
    seen = []
    for computed in range(95, 59, -1):
        shown = score_steady(shown, computed)
        seen.append(shown)
    assert seen[-1] >= 60 and seen[-1] - 60 < SCORE_STEP
    assert len(set(seen)) == len(range(95, 59, -SCORE_STEP))  # one step per SCORE_STEP points
