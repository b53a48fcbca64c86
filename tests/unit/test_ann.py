"""The HNSW ef rule and the filtered-search plan both engines use (search/ann.py)."""

from __future__ import annotations

from alexandria.search.ann import (
    EF_CEILING,
    EXACT_PER_EF,
    MAX_EF,
    REFERENCE_SIZE,
    filtered_plan,
    hnsw_ef,
    unfiltered_plan,
    widened,
)


def test_ef_is_the_configured_one_up_to_the_reference_size() -> None:
    assert [hnsw_ef(128, 10, n) for n in (0, 1, 10_000, REFERENCE_SIZE)] == [128, 128, 128, 128]


def test_ef_grows_with_the_size_faster_than_its_square_root() -> None:
    # measured (bench/ann_recall.py): 100k vectors need ef ~256 for recall@10 0.98, 1M need ~1,400 for 0.97
    assert 256 <= hnsw_ef(128, 10, 4 * REFERENCE_SIZE) <= 400
    assert 1_400 <= hnsw_ef(128, 10, 40 * REFERENCE_SIZE) <= 2_000
    sizes = [REFERENCE_SIZE * f for f in (1, 2, 5, 10, 20, 40)]
    efs = [hnsw_ef(64, 10, n) for n in sizes]
    assert efs == sorted(efs) and efs[0] < efs[-1]


def test_ef_is_at_least_k_and_at_most_the_ceiling() -> None:
    assert hnsw_ef(128, 500, 1_000) == 500
    assert hnsw_ef(128, 10, 10**9) == EF_CEILING > MAX_EF  # pgvector's own ceiling is its engine's to apply
    assert hnsw_ef(128, 5_000, 10**9) == 5_000  # k wins: a search must be able to return k


def test_filtered_plan_is_exact_for_few_candidates() -> None:
    assert filtered_plan(500, 1_000_000, 10, 128, 20_000).exact
    assert filtered_plan(20_000, 1_000_000, 10, 128, 20_000).exact
    assert filtered_plan(5, 1_000_000, 10, 128, 0).exact  # fewer candidates than k
    assert filtered_plan(0, 0, 10, 128, 0).exact


def test_filtered_plan_oversamples_hnsw_for_many_candidates() -> None:
    plan = filtered_plan(100_000, 1_000_000, 10, 128, 20_000)  # a 10% filter at 1M
    assert not plan.exact
    assert plan.fetch >= 10 * 10 * 2  # k over the filter's share, twice
    assert plan.ef >= plan.fetch and plan.ef >= hnsw_ef(128, 10, 1_000_000)


def test_filtered_plan_goes_exact_where_hnsw_would_cost_more() -> None:
    # 10,000 of 1M pass: HNSW would need ~2,000 results (ef likewise) to keep k, more work than scoring them all
    assert filtered_plan(10_000, 1_000_000, 10, 128, 0).exact
    assert filtered_plan(10_000, 1_000_000, 10, 128, 0).fetch >= 2_000
    assert not filtered_plan(500_000, 1_000_000, 10, 128, 0).exact


def test_widening_ends_exact() -> None:
    plan = filtered_plan(300_000, 1_000_000, 10, 128, 20_000)
    fetches = []
    while not plan.exact:
        fetches.append(plan.fetch)
        plan = widened(plan, 300_000, 1_000_000, 128)
    assert fetches == sorted(fetches) and len(fetches) >= 2


def test_an_unfiltered_search_is_exact_while_scoring_everything_costs_no_more_than_hnsw() -> None:
    small, edge = unfiltered_plan(600, 10, 128), unfiltered_plan(EXACT_PER_EF * 128, 10, 128)
    assert small.exact and edge.exact and small.fetch == 10
    large = unfiltered_plan(EXACT_PER_EF * 128 + 1, 10, 128)
    assert not large.exact and large.ef == 128
    assert unfiltered_plan(5, 10, 128).fetch == 5  # never more than the index holds
    big = unfiltered_plan(1_000_000, 10, 128)
    assert not big.exact and big.ef == hnsw_ef(128, 10, 1_000_000)
