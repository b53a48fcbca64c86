from __future__ import annotations

import random

import pytest

from alexandria.search.fusion import (
    Candidates,
    FusionSpec,
    agreement,
    calibrated_keyword,
    calibrated_vector,
    confidence_weight,
    convex,
    fuse,
    rrf,
)


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


# --- confidence fusion: rules on constructed score lists ------------------------------------------------------------

BOUND = 20.0


def _candidates(keyword: dict[int, float], vector: dict[int, float], bound: float = BOUND) -> Candidates:
    return Candidates(
        keyword=keyword,
        vector=vector,
        keyword_ranked=sorted(keyword, key=lambda k: (-keyword[k], k)),
        vector_ranked=sorted(vector, key=lambda k: (-vector[k], k)),
        keyword_bound=bound,
    )


def _ranked(scores: dict[int, float]) -> list[int]:
    return sorted(scores, key=lambda k: (-scores[k], k))


def _informative(n: int, rng: random.Random) -> tuple[dict[int, float], dict[int, float]]:
    """Two signals that both track a hidden relevance (each with its own noise): they agree."""
    relevance = {k: rng.random() ** 3 for k in range(n)}
    keyword = {k: 2.0 + 12.0 * r + rng.gauss(0, 0.8) for k, r in relevance.items()}
    vector = {k: 0.25 + 0.5 * r + rng.gauss(0, 0.03) for k, r in relevance.items()}
    return keyword, vector


def test_no_keyword_match_ranks_by_vector_alone() -> None:
    vector = {k: 0.2 + 0.01 * k for k in range(40)}
    fused = fuse(_candidates({}, vector, bound=0.0), FusionSpec())
    assert _ranked(fused) == _ranked(vector)


def test_a_flat_vector_list_that_disagrees_with_keyword_is_ignored() -> None:
    rng = random.Random(3)
    keyword = {k: 1.0 + 10.0 * rng.random() ** 4 for k in range(60)}
    # an embedding model blind to this text: high, flat cosines unrelated to the keyword evidence
    vector = {k: 0.74 + rng.gauss(0, 0.01) for k in range(60)}
    c = _candidates(keyword, vector)
    assert confidence_weight(c) == 0.0
    assert _ranked(fuse(c, FusionSpec()))[:10] == _ranked(keyword)[:10]


def test_agreeing_confident_signals_both_count() -> None:
    for trial in range(20):
        keyword, vector = _informative(80, random.Random(trial))
        c = _candidates(keyword, vector)
        assert 0.05 < confidence_weight(c) < 0.95
        # a chunk at the top of both lists ranks first
        top = max(keyword, key=lambda k: keyword[k] / max(keyword.values()) + vector[k] / max(vector.values()))
        keyword[top] = max(keyword.values()) + 1.0
        vector[top] = max(vector.values()) + 0.05
        assert _ranked(fuse(_candidates(keyword, vector), FusionSpec()))[0] == top


def test_confidence_scores_are_a_weighted_sum_of_calibrated_scores() -> None:
    keyword, vector = _informative(50, random.Random(11))
    c = _candidates(keyword, vector)
    lam = confidence_weight(c)
    fused = fuse(c, FusionSpec())
    for k in keyword:
        expected = lam * calibrated_vector(vector[k]) + (1 - lam) * calibrated_keyword(keyword[k], BOUND)
        assert fused[k] == pytest.approx(expected)
        assert 0.0 <= fused[k] <= 1.0


def test_fixed_weights_keep_their_meaning() -> None:
    keyword, vector = _informative(30, random.Random(2))
    c = _candidates(keyword, vector)
    assert _ranked(fuse(c, FusionSpec("confidence", 1.0))) == _ranked(vector)
    assert _ranked(fuse(c, FusionSpec("confidence", 0.0))) == _ranked(keyword)
    mixed = fuse(c, FusionSpec("confidence", 0.7))
    k = next(iter(keyword))
    assert mixed[k] == pytest.approx(0.7 * vector[k] + 0.3 * keyword[k] / BOUND)


def test_rrf_and_convex_stay_selectable() -> None:
    keyword, vector = {1: 5.0, 2: 1.0}, {1: 0.1, 2: 0.9}
    c = _candidates(keyword, vector)
    assert fuse(c, FusionSpec("rrf")) == rrf([1, 2], [2, 1])
    assert fuse(c, FusionSpec("convex", 0.3)) == convex(keyword, vector, 0.3)


def test_the_more_confident_signal_gets_more_weight() -> None:
    rng = random.Random(8)
    keyword, vector = _informative(80, rng)
    base = confidence_weight(_candidates(keyword, vector))
    # sharpen the vector's top: its best chunks stand out further from the rest of its list
    sharper = {k: v + (0.15 if v > sorted(vector.values())[-5] else 0.0) for k, v in vector.items()}
    assert confidence_weight(_candidates(keyword, sharper)) > base


def test_agreement_is_the_significance_of_a_correlation() -> None:
    rng = random.Random(4)
    xs = [rng.random() for _ in range(200)]
    assert agreement(xs, [2 * x + rng.gauss(0, 0.1) for x in xs]) > 10
    assert agreement(xs, [-x for x in xs]) < -10
    unrelated = [abs(agreement(xs, [rng.random() for _ in xs])) for _ in range(50)]
    assert sorted(unrelated)[25] < 1.5  # unrelated lists: |t| mostly within noise
    # the same correlation is more significant over more pairs
    few, many = xs[:20], xs
    noisy = [x + rng.gauss(0, 0.5) for x in xs]
    assert agreement(many, noisy) > agreement(few, noisy[:20])
    assert agreement(xs[:4], [1.0] * 4) == 0.0
    assert agreement([1.0, 2.0], [1.0, 2.0]) == 0.0


def test_a_vector_signal_outside_its_models_scripts_gets_no_weight_unless_keyword_found_nothing() -> None:
    keyword, vector = _informative(60, random.Random(5))
    agreeing = _candidates(keyword, vector)
    assert confidence_weight(agreeing) > 0.05  # the same lists, in a script the model knows: both count
    foreign = Candidates(keyword, vector, agreeing.keyword_ranked, agreeing.vector_ranked, BOUND, False)
    assert confidence_weight(foreign) == 0.0
    assert _ranked(fuse(foreign, FusionSpec()))[:10] == _ranked(keyword)[:10]
    nothing = Candidates({}, vector, [], agreeing.vector_ranked, 0.0, False)
    assert _ranked(fuse(nothing, FusionSpec())) == _ranked(vector)  # vector alone beats no answer
    # a request's own weights keep their meaning whatever the script (Dify's weighted score)
    assert fuse(foreign, FusionSpec("confidence", 0.7)) == fuse(agreeing, FusionSpec("confidence", 0.7))
