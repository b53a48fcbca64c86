"""Documents: validate, chunk, embed (reusing vectors of unchanged chunks) and store; get, list, delete."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import blake3
import numpy as np

from alexandria.config import Settings
from alexandria.domain.models import DataSource, Document
from alexandria.errors import AlexandriaError, ChunkingFailed, InvalidRequest, QuotaExceeded
from alexandria.ingest.base import Vectors
from alexandria.ingest.chunkers import ChunkingError, Section, SectionChunker, section_full_text
from alexandria.services.embedders import EmbedderRegistry
from alexandria.storage.base import ChunkWrite, DocumentWrite, Store

MAX_TITLE_LENGTH = 512
DEFAULT_MIME_TYPE = "application/octet-stream"


@dataclass(frozen=True)
class UpsertRequest:
    document_id: str
    section: Section
    title: str | None = None
    mime_type: str | None = None
    source_url: str | None = None
    timestamp: float | None = None
    tags: tuple[str, ...] = ()
    parents: tuple[str, ...] | None = None
    parent_id: str | None = None


@dataclass(frozen=True)
class UpsertResult:
    document: Document
    changed: bool  # False when identical content was already stored (no work done)
    embedded_chunks: int  # chunks actually sent to the embedder (others reused by hash)


def section_to_json(section: Section) -> object:
    return {
        "prefix": section.prefix,
        "content": section.content,
        "sections": [section_to_json(s) for s in section.sections],
    }


def chunk_hash(text: str) -> str:
    return blake3.blake3(text.encode()).hexdigest()


def normalize_timestamp(value: float | None, now_ms: int) -> int:
    """Epoch milliseconds. Values below 1e10 are seconds (Dust PR #27046); negative or non-finite are refused."""
    if value is None:
        return now_ms
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest("Invalid timestamp: must be a non-negative number of epoch milliseconds.")
    if value < 1e10:
        value *= 1000
    return int(value)


def resolve_title(title: str | None, tags: Sequence[str], fallback: str) -> tuple[str, tuple[str, ...]]:
    """Dust's rule: ``title.trim()`` || first ``title:`` tag || the fallback; adds ``title:<title>`` if absent."""
    if title is not None and len(title) > MAX_TITLE_LENGTH:
        raise InvalidRequest(f"Invalid title: title too long (max {MAX_TITLE_LENGTH} characters).")
    resolved = (title or "").strip()
    tag_title = next((t[len("title:") :].strip() for t in tags if t.startswith("title:")), None)
    if not resolved:
        resolved = tag_title or fallback
    out_tags = tuple(dict.fromkeys(tags))
    if tag_title is None:
        out_tags = (*out_tags, f"title:{resolved}")
    return resolved, out_tags


@dataclass(frozen=True)
class _Prepared:
    write: DocumentWrite
    chunks: list[ChunkWrite]
    known: dict[str, Vectors]
    todo: list[int]


class DocumentService:
    def __init__(self, store: Store, embedders: EmbedderRegistry, settings: Settings) -> None:
        self.store = store
        self.embedders = embedders
        self.settings = settings

    def upsert(self, ds: DataSource, req: UpsertRequest, now_ms: int) -> UpsertResult:
        result = self.upsert_many(ds, [req], now_ms)[0]
        if isinstance(result, AlexandriaError):
            raise result
        return result

    def upsert_many(
        self,
        ds: DataSource,
        reqs: Sequence[UpsertRequest],
        now_ms: int,
        on_embedded: Callable[[int], None] | None = None,
    ) -> list[UpsertResult | AlexandriaError]:
        """Upsert several documents, embedding all their new chunks together (batched by length).

        Each document is validated and written on its own: the result list holds, in order, each document's
        result or the domain error that refused it. ``on_embedded(n)`` reports progress in chunks embedded.
        """
        embedder = self.embedders.get(ds.embedder)
        chunker = SectionChunker(embedder.tokenizer, ds.chunk_size)
        results: list[UpsertResult | AlexandriaError | _Prepared] = []
        for req in reqs:
            try:
                results.append(self._prepare(ds, req, now_ms, chunker))
            except AlexandriaError as exc:
                results.append(exc)
        pending = [p for p in results if isinstance(p, _Prepared)]
        texts = [p.chunks[i].text for p in pending for i in p.todo]
        embedded = np.zeros((0, ds.dim), dtype=np.float32)
        if texts:
            parts = []
            step = max(self.settings.embed_batch_size * 8, 1)
            for start in range(0, len(texts), step):
                parts.append(embedder.embed(texts[start : start + step]))
                if on_embedded is not None:
                    on_embedded(min(step, len(texts) - start))
            embedded = np.concatenate(parts)
        cursor = 0
        out: list[UpsertResult | AlexandriaError] = []
        for item in results:
            if not isinstance(item, _Prepared):
                out.append(item)
                continue
            vectors: Vectors = np.zeros((len(item.chunks), ds.dim), dtype=np.float32)
            for i in item.todo:
                vectors[i] = embedded[cursor]
                cursor += 1
            for i, w in enumerate(item.chunks):
                if w.hash in item.known:
                    vectors[i] = item.known[w.hash]
            try:
                doc = self.store.upsert_document(ds, item.write, item.chunks, vectors)
            except AlexandriaError as exc:
                out.append(exc)
                continue
            out.append(UpsertResult(doc, changed=True, embedded_chunks=len(item.todo)))
        return out

    def _prepare(
        self, ds: DataSource, req: UpsertRequest, now_ms: int, chunker: SectionChunker
    ) -> UpsertResult | _Prepared:
        if not req.document_id:
            raise InvalidRequest("Invalid document id: must not be empty.")
        text = section_full_text(req.section)
        limit = int(self.settings.max_document_mb * 1024 * 1024)
        if len(text) > limit:
            raise QuotaExceeded(
                f"Data sources document upload size is limited to {self.settings.max_document_mb:g}MB. "
                f"You are attempting to upload {len(text)} bytes.",
                code="document_too_large",
            )
        title, tags = resolve_title(req.title, req.tags, req.document_id)
        parents = req.parents if req.parents is not None else (req.document_id,)
        timestamp = normalize_timestamp(req.timestamp, now_ms)
        mime_type = req.mime_type or DEFAULT_MIME_TYPE
        section_json = json.dumps(section_to_json(req.section), ensure_ascii=False, separators=(",", ":"))
        identity = [req.document_id, section_json, timestamp, list(tags), list(parents), req.parent_id, title]
        identity += [mime_type, req.source_url, ds.embedder, ds.chunk_size]
        doc_hash = blake3.blake3(json.dumps(identity, ensure_ascii=False).encode()).hexdigest()
        if self.store.document_hash(ds, req.document_id) == doc_hash:
            existing = self.store.get_document(ds, req.document_id, with_text=False)
            if existing is not None:
                return UpsertResult(existing, changed=False, embedded_chunks=0)
        try:
            chunks = chunker.chunk(req.section)
        except ChunkingError as exc:
            raise ChunkingFailed(str(exc)) from exc
        writes = [ChunkWrite(c.offset, c.text, chunk_hash(c.text), c.token_count) for c in chunks]
        known = self.store.vectors_by_chunk_hash(ds, req.document_id)
        write = DocumentWrite(
            document_id=req.document_id,
            title=title,
            mime_type=mime_type,
            source_url=req.source_url,
            timestamp=timestamp,
            tags=tags,
            parents=tuple(parents),
            parent_id=req.parent_id,
            section_json=section_json,
            text=text,
            hash=doc_hash,
            token_count=sum(w.token_count for w in writes),
        )
        todo = [i for i, w in enumerate(writes) if w.hash not in known]
        return _Prepared(write, writes, known, todo)

    def get(self, ds: DataSource, document_id: str) -> Document | None:
        return self.store.get_document(ds, document_id, with_text=True)

    def list(
        self, ds: DataSource, document_ids: Sequence[str] | None, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        if limit < 0 or offset < 0:
            raise InvalidRequest("limit and offset must be non-negative integers.")
        return self.store.list_documents(ds, document_ids, limit, offset)

    def delete(self, ds: DataSource, document_id: str) -> bool:
        return self.store.delete_document(ds, document_id)

    def update_parents(self, ds: DataSource, document_id: str, parents: Sequence[str], parent_id: str | None) -> bool:
        check_parents(document_id, parents, parent_id, explicit_parent_id=True)
        return self.store.update_parents(ds, document_id, parents, parent_id)


def check_parents(document_id: str, parents: Sequence[str], parent_id: str | None, *, explicit_parent_id: bool) -> None:
    """Dust's consistency rules for ``parents``/``parent_id`` (system keys)."""
    if len(parents) < 1:
        raise InvalidRequest("Invalid parents: parents must have at least one element.")
    if parents[0] != document_id:
        raise InvalidRequest("Invalid parents: parents[0] should be equal to document_id.")
    if (len(parents) >= 2 or (explicit_parent_id and parent_id is not None)) and (
        len(parents) < 2 or parents[1] != parent_id
    ):
        raise InvalidRequest("Invalid parent id: parents[1] and parent_id should be equal.")
