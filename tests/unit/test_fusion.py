from __future__ import annotations

import pytest

from alexandria.search.fusion import convex, rrf


def test_convex_uses_both_signals_for_every_candidate() -> None:
    keyword = {1: 10.0, 2: 5.0, 3: 0.0}
    vector = {1: 0.2, 2: 0.9, 3: 0.5}
    fused = convex(keyword, vector, alpha=0.5)
    assert fused[1] == pytest.approx(0.5 * 0.0 + 0.5 * 1.0)
    assert fused[2] == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    assert fused[3] == pytest.approx(0.5 * (0.3 / 0.7) + 0.0)
    assert all(0.0 <= v <= 1.0 for v in fused.values())


def test_convex_alpha_extremes_reduce_to_single_signal() -> None:
    keyword = {1: 3.0, 2: 1.0}
    vector = {1: 0.1, 2: 0.8}
    assert max(convex(keyword, vector, 1.0).items(), key=lambda kv: kv[1])[0] == 2
    assert max(convex(keyword, vector, 0.0).items(), key=lambda kv: kv[1])[0] == 1


def test_convex_missing_keyword_scores_count_as_no_match() -> None:
    fused = convex({1: 2.0}, {1: 0.5, 2: 0.5}, 0.5)
    assert fused[1] > fused[2]
    assert convex({}, {}, 0.5) == {}


def test_rrf() -> None:
    fused = rrf([1, 2, 3], [3, 1])
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)
