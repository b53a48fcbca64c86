"""How wide an HNSW search looks (``ef``), the same rule for both engines' ANN indexes.

A fixed ``ef`` loses recall as an index grows: on the scale benchmark's 100,000 clustered MiniLM-like vectors
(`bench/scale.py`), recall@10 against exact search was 0.943 at ef 128, 0.969 at 192, 0.981 at 256, 0.989 at 384 (200
SciFact queries; 0.6 to 1.4 ms a search), where 10,000 vectors reach 0.99+ at 128. So ``ef`` grows with the square
root of the index's size past a reference size, up to pgvector's limit of 1,000 (and never below ``k``, which usearch
needs to return k results; pgvector's iterative scan does not, and caps ef at 1,000)."""

from __future__ import annotations

import math
from dataclasses import dataclass

REFERENCE_SIZE = 25_000  # up to this many vectors, the configured ef as it is
MAX_EF = 1_000  # pgvector's hnsw.ef_search ceiling


def hnsw_ef(base: int, k: int, size: int) -> int:
    """The ``ef`` of a top-``k`` search over an index of ``size`` vectors, ``base`` being the configured ef."""
    grown = math.ceil(base * math.sqrt(max(size, 1) / REFERENCE_SIZE)) if size > REFERENCE_SIZE else base
    return max(k, min(MAX_EF, grown))


# Filtered search: exact over the candidates, or HNSW oversampled and post-filtered. One rule for both engines.
#
# Exact costs one multiply-add per candidate and dimension (a gathered matrix product: ~0.3 µs a 384-d candidate on
# the embedded store, a row read on PostgreSQL); an HNSW search visits some tens of nodes per unit of ef. So HNSW
# only pays when the candidates outnumber ``EXACT_PER_EF`` times the ef it needs, and never under ``exact_max``.
OVERSAMPLE = 2.0  # fetch this many times the results the filter's share leaves k of, in expectation
EXACT_PER_EF = 10  # exact is cheaper than an HNSW search of ef ``e`` up to this many candidates per unit of ef
WIDEN = 4  # when fewer than k results survive the filter, fetch this many times more (then go exact)


@dataclass(frozen=True)
class FilteredPlan:
    """How to run a top-``k`` vector search restricted to ``candidates`` of an index's ``size`` vectors."""

    exact: bool  # score every candidate (recall 1.0)
    fetch: int  # else: the HNSW results to take before the filter
    ef: int  # ... with this ef


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
    ef = max(fetch, hnsw_ef(base_ef, fetch, size))
    return FilteredPlan(exact=candidates <= EXACT_PER_EF * ef or fetch >= size, fetch=fetch, ef=ef)
