"""Hybrid fusion of keyword and vector scores.

Every method ranks the same candidates: the union of each signal's top-N chunks, each with BOTH scores (cosine
computed exactly for keyword-only candidates, BM25 exactly for vector-only ones; absent: no query term matches), so
a chunk strong in one signal and merely absent from the other's top-N is not penalised.

``confidence`` (default): a per-query weighted sum of the two calibrated scores, ``λ_k · BM25/bound + λ_v · cos``,
where ``bound`` is the most BM25 any chunk could score for the query (:func:`alexandria.search.keyword.bm25_bound`),
so both terms lie in [0, 1] with one meaning across queries. The weights follow the evidence each signal shows for
THIS query (:func:`confidence_weight`):

1. confidence: how many standard deviations of its own top-50 scores a signal's best score stands above their mean;
   for the vector signal scaled down when that gap is under 0.2 in cosine (a flat top list: e.g. an English model
   on Arabic text gives every chunk a similar, high cosine);
2. agreement: the t statistic of the correlation between BM25 (0 without a match) and cosine over the chunks
   keyword search ranks, and over those vector search ranks (each signal's top 100, the server's
   ``hybrid_candidates``); the larger counts. When the correlation is not positive (t ≤ 0) the signals disagree
   and at most one carries evidence: the less confident one is dropped (weight 0); it counts fully from t ≥ 2
   (about p 0.05), in proportion between. Over the eight dev sets at that depth (`bench/fusion_lab.py`): t 0-2
   worst case +0.000 and mean 0.7255; t 1-3 -0.005 / 0.7243, t 2-4 -0.010 / 0.7228, t 3-5 worse still (the t of a
   given correlation grows with the square root of the list's length: thresholds hold for one depth);
3. each signal standardised by its top list's spread: ``λ_s ∝ confidence_s / spread_s`` (scaled to sum to 1), so
   the ranking is that of a confidence-weighted sum of z-scores, and the fused score stays a calibrated [0, 1] value
   (what Dify reports; a request's own weights replace the λ).

A signal with no evidence (no keyword match, a flat list) gets weight 0 and the other ranks alone; so does the vector
signal of a query written in a script its model was not trained on (:attr:`Embedder.scripts`: the English MiniLM on
a Chinese or Arabic query, where its nDCG@10 is 0.19 and 0.02 against keyword's 0.84 and 0.77). A per-query signal
cannot tell that noise from evidence: MiniLM's cosines over Chinese characters still rise with BM25's character
overlap (agreement t above 4 on the queries where fusing them lost most).

``convex``: each signal min-max normalised over the candidates, ``alpha · vector + (1 - alpha) · keyword``.
``rrf``: reciprocal rank fusion, ``sum 1 / (60 + rank)`` over the two top-N lists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

RRF_K = 60
FusionMethod = Literal["confidence", "convex", "rrf"]
FUSION_METHODS: tuple[FusionMethod, ...] = ("confidence", "convex", "rrf")
CONFIDENCE_DEPTH = 50  # each signal's top list whose spread standardises it and measures its confidence
COSINE_GAP = 0.2  # a best cosine this far above its top list's mean counts fully; a flatter top list proportionally
AGREEMENT_NONE = 0.0  # t statistic of the signals' correlation at or below which the weaker signal is dropped
AGREEMENT_FULL = 2.0  # ... and from which it counts fully (in between, in proportion)


@dataclass(frozen=True)
class Candidates:
    """One query's hybrid candidates: every candidate's BM25 (absent: no match within the scored depth) and cosine,
    each signal's own ranking (best first), and the BM25 bound of the query (0.0: no keyword term)."""

    keyword: Mapping[int, float]
    vector: Mapping[int, float]
    keyword_ranked: Sequence[int]
    vector_ranked: Sequence[int]
    keyword_bound: float
    vector_applies: bool = True  # False: the query's script is not one the embedding model knows

    def ids(self) -> list[int]:
        return sorted(set(self.keyword) | set(self.vector))

    def top(self, n: int) -> Candidates:
        """The candidates a search ``n`` deep would have gathered: each signal's top ``n`` and their union, each
        with both scores (a deeper search computed them all)."""
        kw, vec = list(self.keyword_ranked[:n]), list(self.vector_ranked[:n])
        keep = set(kw) | set(vec)
        return Candidates(
            {k: s for k, s in self.keyword.items() if k in keep},
            {k: s for k, s in self.vector.items() if k in keep},
            kw,
            vec,
            self.keyword_bound,
            self.vector_applies,
        )

    @property
    def bound(self) -> float:
        """The BM25 bound, or the best BM25 when no bound is known (so a keyword match always counts)."""
        return self.keyword_bound if self.keyword_bound > 0 else max(self.keyword.values(), default=0.0)


@dataclass(frozen=True)
class FusionSpec:
    """How hybrid search fuses: a method and, for ``convex``, the vector weight; for ``confidence``, optional fixed
    weights (``alpha`` = vector weight) replacing the per-query ones (Dify's request weights)."""

    method: FusionMethod = "confidence"
    alpha: float | None = None

    @property
    def label(self) -> str:
        return self.method if self.alpha is None else f"{self.method}(alpha={self.alpha:g})"


def fuse(c: Candidates, spec: FusionSpec, default_alpha: float = 0.6) -> dict[int, float]:
    """The fused score of every candidate (higher is better)."""
    if spec.method == "rrf":
        return rrf(list(c.keyword_ranked), list(c.vector_ranked))
    if spec.method == "convex":
        return convex(c.keyword, c.vector, default_alpha if spec.alpha is None else spec.alpha)
    if spec.alpha is not None:
        return calibrated_sum(c, spec.alpha)
    return calibrated_sum(c, confidence_weight(c))


def calibrated_sum(c: Candidates, vector_weight: float) -> dict[int, float]:
    """``vector_weight · cos⁺ + (1 - vector_weight) · BM25/bound`` for every candidate, in [0, 1]."""
    out: dict[int, float] = {}
    for k in c.ids():
        out[k] = vector_weight * calibrated_vector(c.vector.get(k)) + (1.0 - vector_weight) * calibrated_keyword(
            c.keyword.get(k), c.bound
        )
    return out


def calibrated_keyword(score: float | None, bound: float) -> float:
    """BM25 as the share of the query's maximal term evidence, in [0, 1]."""
    return 0.0 if score is None or bound <= 0 else min(max(score / bound, 0.0), 1.0)


def calibrated_vector(score: float | None) -> float:
    """Cosine similarity, negative values counted as 0."""
    return 0.0 if score is None else min(max(float(score), 0.0), 1.0)


def spread(scores: Sequence[float], depth: int | None = None) -> tuple[float, float, float]:
    """``(confidence, deviation, gap)`` of a signal's top list: how many standard deviations of its best ``depth``
    scores the best one stands above their mean, that deviation, and the gap itself in the signal's units.
    ``(0, 0, 0)`` when under two scores or all equal: the list carries no ranking evidence."""
    top = sorted(scores, reverse=True)[: depth or CONFIDENCE_DEPTH]
    if len(top) < 2:
        return 0.0, 0.0, 0.0
    mean = sum(top) / len(top)
    sd = math.sqrt(sum((s - mean) ** 2 for s in top) / len(top))
    if sd <= 1e-12:
        return 0.0, 0.0, 0.0
    return (top[0] - mean) / sd, sd, top[0] - mean


def agreement(xs: Sequence[float], ys: Sequence[float]) -> float:
    """How significantly two score lists of the same chunks correlate: the t statistic of their Pearson
    correlation, ``r · sqrt(n - 2) / sqrt(1 - r²)`` (0.0 when either is constant or under three pairs). About 0
    (within ±1) when the lists are unrelated, whatever their length."""
    n = len(xs)
    if n < 3:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 1e-12 or syy <= 1e-12:
        return 0.0
    r = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy)
    r = min(max(r, -0.999999), 0.999999)
    return r * math.sqrt(n - 2) / math.sqrt(1.0 - r * r)


def _agreement_over(c: Candidates, ranked: Sequence[int]) -> float:
    pairs = [(c.keyword.get(k, 0.0), c.vector[k]) for k in ranked if k in c.vector]
    return agreement([p[0] for p in pairs], [p[1] for p in pairs])


def confidence_weight(c: Candidates) -> float:
    """The vector weight λ_v for this query (see the module docstring)."""
    if not c.vector_applies:  # a model that never saw the query's script: keyword alone, unless it found nothing
        return 0.0 if c.keyword and c.bound > 0 else 1.0
    kw_z, kw_sd, _ = spread([c.keyword[k] for k in c.keyword_ranked if k in c.keyword])
    vec_z, vec_sd, vec_gap = spread([c.vector[k] for k in c.vector_ranked if k in c.vector])
    kw_conf, vec_conf = kw_z, vec_z * min(1.0, vec_gap / COSINE_GAP)
    # agreement: over the chunks either signal ranks, does the cosine rise with BM25 (0 where no keyword match)? Not
    # significantly when either signal is noise for this query; then only the more confident signal counts
    t = max(_agreement_over(c, c.keyword_ranked), _agreement_over(c, c.vector_ranked))
    share = min(1.0, max(0.0, (t - AGREEMENT_NONE) / (AGREEMENT_FULL - AGREEMENT_NONE)))
    if vec_conf <= kw_conf:
        vec_conf *= share
    else:
        kw_conf *= share
    # z-score weights: λ_k · BM25/bound ranks as (kw_conf / kw_sd) · BM25, hence λ_k ∝ kw_conf · bound / kw_sd
    a_kw = kw_conf * c.bound / kw_sd if kw_sd > 0 and c.bound > 0 else 0.0
    a_vec = vec_conf / vec_sd if vec_sd > 0 else 0.0
    if a_kw + a_vec <= 0:  # neither signal confident: the one whose top stands out more
        return 0.0 if kw_sd > 0 and c.bound > 0 and kw_z >= vec_z else 1.0
    return a_vec / (a_kw + a_vec)


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
