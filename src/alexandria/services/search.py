"""Search: keyword, vector and hybrid over one data source, grouped per document (Dust's shape)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from alexandria.config import Settings
from alexandria.domain.filters import FilterSet
from alexandria.domain.models import ChunkHit, DataSource, Document, DocumentHits, SearchMode
from alexandria.errors import InvalidRequest
from alexandria.search import fusion
from alexandria.search.analysis import dominant_script
from alexandria.services.embedders import EmbedderRegistry
from alexandria.storage.base import ScoredId, SearchStore, StoredChunk

MAX_TOP_K = 1024


@dataclass(frozen=True)
class SearchRequest:
    query: str
    top_k: int
    mode: SearchMode = SearchMode.HYBRID
    filters: FilterSet = field(default_factory=FilterSet)
    full_text: bool = False
    target_document_tokens: int | None = None


class SearchService:
    def __init__(self, store: SearchStore, embedders: EmbedderRegistry, settings: Settings) -> None:
        self.store = store
        self.embedders = embedders
        self.settings = settings

    def search(self, ds: DataSource, req: SearchRequest) -> list[DocumentHits]:
        if req.top_k < 0 or req.top_k > MAX_TOP_K:
            raise InvalidRequest(f"top_k must be between 0 and {MAX_TOP_K}.", code="invalid_top_k")
        if req.target_document_tokens is not None and req.target_document_tokens < 0:
            raise InvalidRequest("target_document_tokens must be non-negative.")
        if not req.query.strip():
            if req.target_document_tokens:
                raise InvalidRequest("target_document_tokens requires a non-empty query.")
            return self._latest(ds, req)
        hits = self.rank_chunks(ds, req.query, req.mode, req.filters, req.top_k)
        return self._group(ds, hits, req)

    def rank_chunks(
        self,
        ds: DataSource,
        query: str,
        mode: SearchMode,
        filters: FilterSet,
        k: int,
        fusion_spec: fusion.FusionSpec | None = None,
    ) -> list[ChunkHit]:
        """The top-``k`` chunks for ``query``, best first, with every computed signal's score. Hybrid search fuses
        with ``fusion_spec`` (default: the server's setting)."""
        if k == 0:
            return []
        if mode is SearchMode.KEYWORD:
            kw = self.store.keyword_search(ds, query, filters, k)
            return self._hits(kw, keyword={s.pk: s.score for s in kw})
        if mode is SearchMode.VECTOR:
            vector = self.embedders.query(ds.embedder).embed([query])[0]
            vec = self.store.vector_search(ds, vector, filters, k)
            return self._hits(vec, vector={s.pk: s.score for s in vec})
        return self.fuse(self.candidates(ds, query, filters, self.hybrid_depth(k)), k, fusion_spec)

    def hybrid_depth(self, k: int) -> int:
        """How many of each signal's best chunks a hybrid top-``k`` search fuses."""
        return max(self.settings.hybrid_candidates, k)

    def default_fusion(self) -> fusion.FusionSpec:
        alpha = self.settings.hybrid_alpha if self.settings.fusion == "convex" else None
        return fusion.FusionSpec(self.settings.fusion, alpha)

    def candidates(self, ds: DataSource, query: str, filters: FilterSet, n: int) -> fusion.Candidates:
        """Hybrid candidates: each signal's top ``n`` chunks, every one with both scores, and the BM25 bound."""
        embedder = self.embedders.query(ds.embedder)
        vector = embedder.embed([query])[0]
        kw = self.store.keyword_search(ds, query, filters, n)
        vec = self.store.vector_search(ds, vector, filters, n)
        kw_scores = {s.pk: s.score for s in kw}
        vec_scores = {s.pk: s.score for s in vec}
        # each candidate with both scores, computed exactly for the chosen chunks (whatever the number of matches)
        kw_scores.update(self.store.keyword_scores(ds, query, [pk for pk in vec_scores if pk not in kw_scores]))
        vec_scores.update(self.store.vector_scores(ds, vector, [pk for pk in kw_scores if pk not in vec_scores]))
        bound = self.store.keyword_score_bound(ds, query) if kw else 0.0
        script = dominant_script(query)
        applies = embedder.scripts is None or script is None or script in embedder.scripts
        return fusion.Candidates(kw_scores, vec_scores, [s.pk for s in kw], [s.pk for s in vec], bound, applies)

    def fuse(self, cands: fusion.Candidates, k: int, spec: fusion.FusionSpec | None = None) -> list[ChunkHit]:
        """The top-``k`` of hybrid candidates under a fusion (default: the server's)."""
        return self._hits(self.fused_order(cands, k, spec), keyword=dict(cands.keyword), vector=dict(cands.vector))

    def fused_order(self, cands: fusion.Candidates, k: int, spec: fusion.FusionSpec | None = None) -> list[ScoredId]:
        """The top-``k`` candidate ids with their fused scores, best first (ties: lower id first)."""
        fused = fusion.fuse(cands, spec or self.default_fusion(), self.settings.hybrid_alpha)
        return [ScoredId(pk, s) for pk, s in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]

    def _hits(
        self,
        ranked: list[ScoredId],
        keyword: dict[int, float] | None = None,
        vector: dict[int, float] | None = None,
    ) -> list[ChunkHit]:
        chunks = self.store.load_chunks([s.pk for s in ranked])
        out: list[ChunkHit] = []
        for s in ranked:
            c = chunks.get(s.pk)
            if c is None:  # deleted between ranking and loading
                continue
            out.append(
                ChunkHit(
                    chunk_pk=c.pk,
                    document_pk=c.document_pk,
                    offset=c.offset,
                    text=c.text,
                    hash=c.hash,
                    score=s.score,
                    keyword_score=(keyword or {}).get(c.pk),
                    vector_score=(vector or {}).get(c.pk),
                )
            )
        return out

    def _group(self, ds: DataSource, hits: list[ChunkHit], req: SearchRequest) -> list[DocumentHits]:
        order: list[int] = []
        per_doc: dict[int, list[ChunkHit]] = {}
        for h in hits:
            if h.document_pk not in per_doc:
                order.append(h.document_pk)
                per_doc[h.document_pk] = []
            per_doc[h.document_pk].append(h)
        docs = self.store.documents_by_pk(order, with_text=req.full_text)
        out: list[DocumentHits] = []
        for pk in order:
            doc = docs.get(pk)
            if doc is None:
                continue
            chunks = per_doc[pk]
            if req.target_document_tokens:
                chunks = self._expand(
                    doc.document_id, pk, doc.chunk_count, chunks, ds.chunk_size, req.target_document_tokens
                )
            out.append(DocumentHits(document=doc, chunks=chunks))
        return out

    def _expand(
        self, document_id: str, doc_pk: int, chunk_count: int, hits: list[ChunkHit], chunk_size: int, target: int
    ) -> list[ChunkHit]:
        """Dust's ``target_document_tokens``: grow each hit with neighbouring chunks, half left and half right."""
        extra = (target - len(hits) * chunk_size) // chunk_size
        if extra <= 0:
            return hits
        taken = {h.offset for h in hits}
        plan: dict[int, tuple[list[int], list[int]]] = {}
        share, rest = divmod(extra, len(hits))
        for i, h in enumerate(hits):
            budget = share + (1 if i < rest else 0)
            left: list[int] = []
            right: list[int] = []
            step = 1
            while budget > 0 and (h.offset - step >= 0 or h.offset + step < chunk_count):
                for off, side in ((h.offset - step, left), (h.offset + step, right)):
                    if budget > 0 and 0 <= off < chunk_count and off not in taken:
                        taken.add(off)
                        side.append(off)
                        budget -= 1
                step += 1
            plan[h.offset] = (sorted(left), sorted(right))
        wanted = [o for left, right in plan.values() for o in left + right]
        neighbours: dict[int, StoredChunk] = self.store.chunks_at_offsets(doc_pk, wanted) if wanted else {}
        out: list[ChunkHit] = []
        for h in hits:
            left, right = plan[h.offset]
            before = [neighbours[o].text for o in left if o in neighbours]
            after = [neighbours[o].text for o in right if o in neighbours]
            added = tuple(o for o in left + right if o in neighbours)
            out.append(replace(h, text=" ".join([*before, h.text, *after]), expanded_offsets=added))
        return out

    def document_chunks(self, doc: Document) -> list[ChunkHit]:
        """All chunks of a stored document, in order (for upsert responses)."""
        return [
            ChunkHit(c.pk, c.document_pk, c.offset, c.text, c.hash, score=None)
            for c in self.store.chunks_of_documents([doc.pk])
        ]

    def documents_by_pk(self, pks: Sequence[int]) -> dict[int, Document]:
        """The documents (without their text) of given internal ids, e.g. of ranked chunks."""
        return self.store.documents_by_pk(pks, with_text=False)

    def _latest(self, ds: DataSource, req: SearchRequest) -> list[DocumentHits]:
        """Empty query: the latest documents by timestamp, their chunks in order, at most ``top_k`` chunks."""
        doc_pks = self.store.latest_documents(ds, req.filters, req.top_k)
        docs = self.store.documents_by_pk(doc_pks, with_text=req.full_text)
        chunks = self.store.chunks_of_documents(doc_pks)
        by_doc: dict[int, list[ChunkHit]] = {pk: [] for pk in doc_pks}
        budget = req.top_k
        rank = {pk: i for i, pk in enumerate(doc_pks)}
        for c in sorted(chunks, key=lambda c: (rank[c.document_pk], c.offset)):
            if budget == 0:
                break
            by_doc[c.document_pk].append(ChunkHit(c.pk, c.document_pk, c.offset, c.text, c.hash, score=None))
            budget -= 1
        return [DocumentHits(docs[pk], by_doc[pk]) for pk in doc_pks if pk in docs and by_doc[pk]]
