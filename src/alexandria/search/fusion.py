"""Hybrid fusion of keyword and vector scores.

``convex`` (default): every candidate from either list gets BOTH scores (cosine computed exactly for keyword-only
candidates; BM25 for vector-only candidates read from one deeper ranked BM25 pass, 0 beyond it), each signal is
min-max normalised over the candidate set, and the fused score is ``alpha * vector + (1 - alpha) * keyword``, in
[0, 1]. Because both signals are known for every candidate, a document strong in one signal and merely absent from
the other's top-N is not penalised as it is with rank fusion. ``rrf``: reciprocal rank fusion,
``sum 1 / (60 + rank)``.
"""

from __future__ import annotations

from collections.abc import Mapping

RRF_K = 60


def _minmax(scores: Mapping[int, float], keys: list[int], floor: float | None) -> dict[int, float]:
    values = [scores[k] for k in keys if k in scores]
    if not values:
        return dict.fromkeys(keys, 0.0)
    lo = min(values) if floor is None else min(floor, min(values))
    hi = max(values)
    span = hi - lo
    out: dict[int, float] = {}
    for k in keys:
        v = scores.get(k)
        out[k] = 0.0 if v is None or span <= 0 else (v - lo) / span
    if span <= 0:  # all equal: a present signal counts fully
        for k in keys:
            if k in scores:
                out[k] = 1.0
    return out


def convex(keyword: Mapping[int, float], vector: Mapping[int, float], alpha: float) -> dict[int, float]:
    """Fused scores in [0, 1] for every key of either mapping. BM25 is normalised from 0 (no match)."""
    keys = sorted(set(keyword) | set(vector))
    kw = _minmax(keyword, keys, floor=0.0)
    vec = _minmax(vector, keys, floor=None)
    return {k: alpha * vec[k] + (1.0 - alpha) * kw[k] for k in keys}


def rrf(keyword_ranked: list[int], vector_ranked: list[int], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion of two ranked id lists (best first)."""
    out: dict[int, float] = {}
    for ranked in (keyword_ranked, vector_ranked):
        for rank, key in enumerate(ranked, start=1):
            out[key] = out.get(key, 0.0) + 1.0 / (k + rank)
    return out
