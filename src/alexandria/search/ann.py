"""How wide an HNSW search looks (``ef``), the same rule for both engines' ANN indexes, and the plan of a filtered
search (exact over the candidates, or HNSW oversampled and post-filtered).

A fixed ``ef`` loses recall as an index grows. On the scale benchmark's clustered MiniLM-like vectors
(`bench/scale.py`, `bench/ann_recall.py`; 200 real SciFact queries, recall@10 against exact search, usearch M 16,
efConstruction 128): 100,000 vectors reach 0.943 at ef 128, 0.981 at 256, 0.989 at 384; 1,000,000 vectors only
0.70 at ef 128, 0.93 at 810 (what a square-root growth gave), 0.959 at 1,000, 0.971 at 1,400 and 0.982 at 2,000. So
past a reference size ``ef`` grows as the size to the power 0.7 (338 at 100k, 1,693 at 1M: 0.976), never below
``k`` (usearch needs ef ≥ k to return k results) and up to ``EF_CEILING``; pgvector refuses more than ``MAX_EF``
(its iterative scan does not need ef ≥ k), which its engine applies."""

from __future__ import annotations

import math
from dataclasses import dataclass

REFERENCE_SIZE = 25_000  # up to this many vectors, the configured ef as it is
GROWTH = 0.7  # past it, ef grows as (size / REFERENCE_SIZE) ** GROWTH
EF_CEILING = 4_096  # the widest search the rule asks for
MAX_EF = 1_000  # pgvector's hnsw.ef_search ceiling


def hnsw_ef(base: int, k: int, size: int) -> int:
    """The ``ef`` of a top-``k`` search over an index of ``size`` vectors, ``base`` being the configured ef."""
    grown = math.ceil(base * (size / REFERENCE_SIZE) ** GROWTH) if size > REFERENCE_SIZE else base
    return max(k, min(EF_CEILING, grown))


# Filtered search: exact over the candidates, or HNSW oversampled and post-filtered. One rule for both engines.
#
# Exact costs a gathered dot product per candidate (~3.3 µs a 384-d candidate, HNSW ~15.5 µs per unit of ef: at 1M,
# exact over 9,620 candidates 28-35 ms against 15-16 ms for ef 1,000, at load average 13, `bench/ann_recall.py`;
# on PostgreSQL exact reads rows). So HNSW only pays when the candidates outnumber ``EXACT_PER_EF`` times the ef it
# needs, and never under ``exact_max`` (the configured limit below which search is always exact: recall 1.0).
# Post-filtered HNSW needs a deep, accurate fetch: at 1M under a 10% filter (k 10), fetch 214 / ef 1,690 gave recall@10
# 0.944, 214 / 3,500 0.977, 420 / 2,500 0.982, 420 / 3,500 0.991 (`bench/ann_recall.py`).
# at 1M over HTTP (`bench/scale.py`, i8 graph rescored exactly), a 10% tag with 4 gave recall@10 0.975-0.977
OVERSAMPLE = 6.0  # fetch this many times the results the filter's share leaves k of, in expectation
EF_PER_FETCH = 6  # ... with an ef of at least this many times the fetch (up to EF_CEILING)
EXACT_PER_EF = 5  # exact is cheaper than an HNSW search of ef ``e`` up to this many candidates per unit of ef
WIDEN = 4  # when fewer than k results survive the filter, fetch this many times more (then go exact)


@dataclass(frozen=True)
class FilteredPlan:
    """How to run a top-``k`` vector search restricted to ``candidates`` of an index's ``size`` vectors."""

    exact: bool  # score every candidate (recall 1.0)
    fetch: int  # else: the HNSW results to take before the filter
    ef: int  # ... with this ef


def unfiltered_plan(size: int, k: int, base_ef: int) -> FilteredPlan:
    """The plan of an unfiltered top-``k`` search over ``size`` vectors: exact while scoring every vector costs no
    more than the HNSW search would (``EXACT_PER_EF`` per unit of ef), which also makes a small data source's
    results exact whatever order its graph was built in."""
    ef = hnsw_ef(base_ef, k, size)
    return FilteredPlan(exact=size <= EXACT_PER_EF * ef, fetch=min(k, size), ef=ef)


def filtered_plan(candidates: int, size: int, k: int, base_ef: int, exact_max: int) -> FilteredPlan:
    """The plan of a filtered top-``k`` search (``base_ef`` the configured ef, ``exact_max`` the configured
    number of candidates below which the search is always exact)."""
    if candidates <= max(exact_max, k) or candidates >= size:
        return FilteredPlan(exact=candidates <= max(exact_max, k), fetch=k, ef=hnsw_ef(base_ef, k, size))
    fetch = min(size, math.ceil(k * size / candidates * OVERSAMPLE) + k)
    return _plan(candidates, size, fetch, base_ef)


def widened(plan: FilteredPlan, candidates: int, size: int, base_ef: int) -> FilteredPlan:
    """The next plan when ``plan`` left fewer than k results after the filter: a wider fetch, or exact."""
    if plan.exact or plan.fetch >= size:
        return FilteredPlan(exact=True, fetch=plan.fetch, ef=plan.ef)
    return _plan(candidates, size, min(size, plan.fetch * WIDEN), base_ef)


def _plan(candidates: int, size: int, fetch: int, base_ef: int) -> FilteredPlan:
    ef = max(fetch, hnsw_ef(base_ef, fetch, size), min(EF_CEILING, EF_PER_FETCH * fetch))
    return FilteredPlan(exact=candidates <= EXACT_PER_EF * ef or fetch >= size, fetch=fetch, ef=ef)
