"""The HNSW ef rule both engines use (search/ann.py)."""

from __future__ import annotations

from alexandria.search.ann import MAX_EF, REFERENCE_SIZE, hnsw_ef


def test_ef_is_the_configured_one_up_to_the_reference_size() -> None:
    assert [hnsw_ef(128, 10, n) for n in (0, 1, 10_000, REFERENCE_SIZE)] == [128, 128, 128, 128]


def test_ef_grows_with_the_square_root_of_the_size() -> None:
    assert hnsw_ef(128, 10, 4 * REFERENCE_SIZE) == 256
    assert hnsw_ef(128, 10, 16 * REFERENCE_SIZE) == 512
    sizes = [REFERENCE_SIZE * f for f in (1, 2, 5, 10, 20, 40)]
    efs = [hnsw_ef(64, 10, n) for n in sizes]
    assert efs == sorted(efs) and efs[0] < efs[-1]


def test_ef_is_at_least_k_and_at_most_pgvectors_limit() -> None:
    assert hnsw_ef(128, 500, 1_000) == 500
    assert hnsw_ef(128, 10, 10**9) == MAX_EF
    assert hnsw_ef(128, 2_000, 10**9) == 2_000  # k wins: a search must be able to return k
