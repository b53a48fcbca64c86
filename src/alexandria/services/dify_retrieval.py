"""Dify's retrieval (``POST /datasets/{id}/retrieve`` and ``/hit-testing``) over the core's search.

Every method reports a score in [0, 1] with one meaning, so ``score_threshold`` means the same whatever the method:
- ``semantic_search``: the cosine similarity of query and chunk (negative values count as 0);
- ``full_text_search`` / ``keyword_search``: BM25 divided by the most BM25 any chunk could score for this query (each
  query term's IDF times k1 + 1): the share of the query's maximal term evidence the chunk holds;
- ``hybrid_search``: ``vector_weight · semantic + keyword_weight · keyword`` of those two scores over the candidates
  of both signals, with the weights of ``retrieval_model.weights`` when the request sets them; otherwise the search
  engine's default fusion (``confidence``: the same sum with weights following each signal's confidence for the
  query, :mod:`alexandria.search.fusion`; with the ``convex`` or ``rrf`` setting, the server's hybrid alpha);
- with ``reranking_enable``: the reranker's relevance in [0, 1].
Records are segments (one per segment; a hierarchical segment's score is its best child chunk's), best first, at most
``top_k``, each at least ``score_threshold`` when ``score_threshold_enabled``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from alexandria.config import Settings
from alexandria.domain.dify import ChildChunk, Segment
from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.domain.metadata_filter import MetadataFilter
from alexandria.domain.models import ChunkHit, DataSource, Document, SearchMode
from alexandria.errors import InvalidRequest
from alexandria.search.fusion import FusionSpec
from alexandria.search.rerank import Reranker
from alexandria.services.search import MAX_TOP_K, SearchService
from alexandria.storage.base import DifyStore, SearchStore

METHODS = {
    "semantic_search": SearchMode.VECTOR,
    "full_text_search": SearchMode.KEYWORD,
    "keyword_search": SearchMode.KEYWORD,
    "hybrid_search": SearchMode.HYBRID,
}


@dataclass
class RetrievalRecord:
    document: Document
    segment: Segment | None  # None: a chunk of a document written through Dust (rendered as a segment)
    chunk: ChunkHit
    score: float
    child_chunks: list[tuple[ChildChunk, float]] = field(default_factory=list)

    @property
    def content(self) -> str:
        return self.segment.content if self.segment is not None else self.chunk.text


def _clip(x: float | None) -> float:
    return 0.0 if x is None else min(max(float(x), 0.0), 1.0)


def hybrid_weights(model: Mapping[str, Any]) -> tuple[float, float] | None:
    """``(vector_weight, keyword_weight)`` from Dify's ``weights``, normalised to sum to 1 (None: not set)."""
    weights = model.get("weights")
    if weights is None:
        return None
    if not isinstance(weights, Mapping):
        raise InvalidRequest("weights must be an object.", code="invalid_param")
    vector_setting, keyword_setting = weights.get("vector_setting") or {}, weights.get("keyword_setting") or {}
    if not isinstance(vector_setting, Mapping) or not isinstance(keyword_setting, Mapping):
        raise InvalidRequest(
            "weights.vector_setting and weights.keyword_setting must be objects.", code="invalid_param"
        )
    vec = vector_setting.get("vector_weight")
    kw = keyword_setting.get("keyword_weight")
    vw = float(vec) if isinstance(vec, int | float) else None
    kwf = float(kw) if isinstance(kw, int | float) else None
    if vw is None and kwf is None:
        return None
    vw = vw if vw is not None else 1.0 - (kwf or 0.0)
    kwf = kwf if kwf is not None else 1.0 - vw
    if vw < 0 or kwf < 0 or vw + kwf <= 0:
        raise InvalidRequest("weights must be non-negative and not both 0.", code="invalid_param")
    total = vw + kwf
    return vw / total, kwf / total


class RetrievalStores(SearchStore, DifyStore, Protocol):
    """The store roles ``DifyRetrieval`` uses."""


class DifyRetrieval:
    def __init__(
        self, store: RetrievalStores, search: SearchService, settings: Settings, reranker: Reranker | None
    ) -> None:
        self.store = store
        self.search = search
        self.settings = settings
        self.reranker = reranker

    def retrieve(
        self, ds: DataSource, query: str, model: Mapping[str, Any], metadata: MetadataFilter | None
    ) -> list[RetrievalRecord]:
        method = model.get("search_method") or "semantic_search"
        if not isinstance(method, str) or method not in METHODS:
            raise InvalidRequest(f"Invalid search_method: {method}", code="invalid_param")
        top_k = model.get("top_k") if model.get("top_k") is not None else 4
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0 or top_k > MAX_TOP_K:
            raise InvalidRequest(f"top_k must be an integer between 0 and {MAX_TOP_K}.", code="invalid_param")
        threshold = 0.0
        if model.get("score_threshold_enabled"):
            raw = model.get("score_threshold")
            if raw is not None and (not isinstance(raw, int | float) or isinstance(raw, bool)):
                raise InvalidRequest("score_threshold must be a number.", code="invalid_param")
            threshold = float(raw or 0.0)
        rerank = bool(model.get("reranking_enable"))
        if rerank and self.reranker is None:
            raise InvalidRequest(
                "No Rerank Model available. Please configure a valid provider in the Settings -> Model Provider "
                "(set ALEXANDRIA_RERANKER).",
                code="invalid_param",
            )
        if not query.strip() or top_k == 0:
            return []
        filters = FilterSet((DocumentFilter(metadata=metadata),)) if metadata is not None else FilterSet()
        mode = METHODS[method]
        weights = hybrid_weights(model) if mode is SearchMode.HYBRID else None
        engine_default = weights is None and self.settings.fusion == "confidence"
        if weights is None:
            weights = (self.settings.hybrid_alpha, 1.0 - self.settings.hybrid_alpha)
        spec = None if engine_default else FusionSpec("confidence", weights[0])  # ranks by the reported sum
        depth = min(max(top_k * 4, self.settings.hybrid_candidates if rerank else 0, top_k), MAX_TOP_K)
        hits = self.search.rank_chunks(ds, query, mode, filters, depth, spec)
        bound = self.store.keyword_score_bound(ds, query) if mode is not SearchMode.VECTOR else 0.0

        def keyword(h: ChunkHit) -> float:
            return _clip((h.keyword_score or 0.0) / bound) if bound > 0 else 0.0

        if mode is SearchMode.VECTOR:
            scored = [(h, _clip(h.vector_score)) for h in hits]
        elif mode is SearchMode.KEYWORD:
            scored = [(h, keyword(h)) for h in hits]
        elif engine_default:  # the fused score is already the calibrated sum, with the query's weights
            scored = [(h, _clip(h.score)) for h in hits]
        else:
            vw, kw = weights
            scored = [(h, vw * _clip(h.vector_score) + kw * keyword(h)) for h in hits]
        records = self._records(scored)
        if rerank and self.reranker is not None and records:
            scores = self.reranker.score(query, [r.content for r in records])
            for r, s in zip(records, scores, strict=True):
                r.score = _clip(s)
        records.sort(key=lambda r: -r.score)
        records = [r for r in records if r.score >= threshold][:top_k]
        self.store.bump_hit_counts([r.segment.pk for r in records if r.segment is not None])
        return records

    def _records(self, scored: Sequence[tuple[ChunkHit, float]]) -> list[RetrievalRecord]:
        """Group chunk hits into segment records (best chunk's score), keeping matched child chunks."""
        links = self.store.chunk_segments([h.chunk_pk for h, _ in scored])
        seg_pks = sorted({seg for seg, _ in links.values() if seg is not None})
        segments = self.store.segments_by_pk(seg_pks)
        docs = self.store.documents_by_pk(sorted({h.document_pk for h, _ in scored}), with_text=False)
        by_key: dict[tuple[str, int], RetrievalRecord] = {}
        for hit, score in scored:
            doc = docs.get(hit.document_pk)
            if doc is None:
                continue
            seg_pk, child_pk = links.get(hit.chunk_pk, (None, None))
            seg = segments.get(seg_pk) if seg_pk is not None else None
            key = ("segment", seg.pk) if seg is not None else ("chunk", hit.chunk_pk)
            record = by_key.get(key)
            if record is None:
                record = by_key[key] = RetrievalRecord(doc, seg, hit, score)
            elif score > record.score:
                record.score, record.chunk = score, hit
            if seg is not None and child_pk is not None:
                child = next((c for c in seg.children if c.pk == child_pk), None)
                if child is not None:
                    record.child_chunks.append((child, score))
        for record in by_key.values():
            record.child_chunks.sort(key=lambda cs: -cs[1])
        return list(by_key.values())
