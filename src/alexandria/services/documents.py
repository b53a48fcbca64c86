"""Documents: validate, chunk, embed (reusing vectors of unchanged chunks) and store; get, list, delete."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import blake3
import numpy as np

from alexandria.config import Settings
from alexandria.domain.jobs import Job, index_job_obsolete
from alexandria.domain.limits import MAX_TIMESTAMP_MS
from alexandria.domain.models import DataSource, Document
from alexandria.errors import AlexandriaError, ChunkingFailed, InvalidRequest, QuotaExceeded
from alexandria.ingest.base import Embedder, Vectors
from alexandria.ingest.chunkers import ChunkingError, Section, SectionChunker, section_full_text
from alexandria.ingest.hashing import chunk_hash
from alexandria.services.embedders import EmbedderRegistry
from alexandria.services.jobs import JobService
from alexandria.storage.base import CatalogStore, ChunkWrite, DocumentStore, DocumentWrite

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


@dataclass(frozen=True)
class AsyncUpsertResult:
    document: Document  # as stored: new content and metadata, chunks still the previous version's until indexed
    job: Job | None  # the queued index job; None when this version was already indexed or queued


def section_to_json(section: Section) -> object:
    return {
        "prefix": section.prefix,
        "content": section.content,
        "sections": [section_to_json(s) for s in section.sections],
    }


def section_from_json(obj: object) -> Section:
    if not isinstance(obj, dict):
        raise InvalidRequest("stored section is not an object")
    prefix, content, sections = obj.get("prefix"), obj.get("content"), obj.get("sections") or []
    if not (prefix is None or isinstance(prefix, str)) or not (content is None or isinstance(content, str)):
        raise InvalidRequest("stored section has a non-string prefix or content")
    if not isinstance(sections, list):
        raise InvalidRequest("stored section has non-list sections")
    return Section(prefix, content, tuple(section_from_json(s) for s in sections))


def normalize_timestamp(value: float | None, now_ms: int) -> int:
    """Epoch milliseconds. Values below 1e10 are seconds (Dust PR #27046); negative, non-finite or beyond
    ``MAX_TIMESTAMP_MS`` (what every store holds) are refused."""
    if value is None:
        return now_ms
    if not math.isfinite(value) or value < 0:
        raise InvalidRequest("Invalid timestamp: must be a non-negative number of epoch milliseconds.")
    if value < 1e10:
        value *= 1000
    ms = int(value)
    if ms > MAX_TIMESTAMP_MS:
        raise InvalidRequest(f"Invalid timestamp: must be at most {MAX_TIMESTAMP_MS} epoch milliseconds.")
    return ms


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
class _Chunks:
    chunks: list[ChunkWrite]
    known: dict[str, Vectors]  # vectors of the document's stored chunks, by chunk hash
    todo: list[int]  # indexes of the chunks to embed (the others' vectors are known by hash)

    def texts(self) -> list[str]:
        return [self.chunks[i].text for i in self.todo]

    def vectors(self, embedded: Vectors, dim: int) -> Vectors:
        """All chunks' vectors: ``embedded`` holds those of ``todo``, in order."""
        vectors: Vectors = np.zeros((len(self.chunks), dim), dtype=np.float32)
        for row, i in enumerate(self.todo):
            vectors[i] = embedded[row]
        for i, w in enumerate(self.chunks):
            if w.hash in self.known:
                vectors[i] = self.known[w.hash]
        return vectors


@dataclass(frozen=True)
class _Prepared(_Chunks):
    write: DocumentWrite


def chunk_writes(chunker: SectionChunker, section: Section) -> list[ChunkWrite]:
    try:
        chunks = chunker.chunk(section)
    except ChunkingError as exc:
        raise ChunkingFailed(str(exc)) from exc
    return [ChunkWrite(c.offset, c.text, chunk_hash(c.text), c.token_count) for c in chunks]


class DocumentStores(CatalogStore, DocumentStore, Protocol):
    """The store roles ``DocumentService`` uses."""


class DocumentService:
    def __init__(
        self, store: DocumentStores, embedders: EmbedderRegistry, settings: Settings, jobs: JobService | None = None
    ) -> None:
        self.store = store
        self.embedders = embedders
        self.settings = settings
        self.jobs = jobs

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
        texts = [t for p in pending for t in p.texts()]
        writer = self.embedders.writer(ds.embedder)
        embedded = self._embed(writer, ds, texts, on_embedded, max(self.settings.embed_batch_size * 8, 1))
        cursor = 0
        out: list[UpsertResult | AlexandriaError] = []
        for item in results:
            if not isinstance(item, _Prepared):
                out.append(item)
                continue
            vectors = item.vectors(embedded[cursor : cursor + len(item.todo)], ds.dim)
            cursor += len(item.todo)
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
        write = self._validate(ds, req, now_ms)
        if self.store.document_hash(ds, req.document_id) == write.hash:
            existing = self.store.get_document(ds, req.document_id, with_text=False)
            if existing is not None:
                return UpsertResult(existing, changed=False, embedded_chunks=0)
        writes = chunk_writes(chunker, req.section)
        known = self.store.vectors_by_chunk_hash(ds, req.document_id)
        todo = [i for i, w in enumerate(writes) if w.hash not in known]
        write = replace(write, token_count=sum(w.token_count for w in writes))
        return _Prepared(chunks=writes, known=known, todo=todo, write=write)

    def _validate(self, ds: DataSource, req: UpsertRequest, now_ms: int) -> DocumentWrite:
        """Every check of an upsert but chunking; the document to store (``token_count`` left 0) with its hash."""
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
        return DocumentWrite(
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
            token_count=0,
        )

    @staticmethod
    def _embed(
        embedder: Embedder, ds: DataSource, texts: list[str], on_embedded: Callable[[int], None] | None, step: int
    ) -> Vectors:
        if not texts:
            return np.zeros((0, ds.dim), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), step):
            parts.append(embedder.embed(texts[start : start + step]))
            if on_embedded is not None:
                on_embedded(min(step, len(texts) - start))
        return np.concatenate(parts)

    # --- async upserts: (1) validate, store as pending and queue, in the request; (2) index, in a worker --------
    def upsert_async(self, ds: DataSource, req: UpsertRequest, now_ms: int) -> AsyncUpsertResult:
        """Validate exactly as :meth:`upsert` does (chunking included, so every error is reported now), then store
        the new content as ``pending`` and queue its index job in one transaction. Nothing is embedded here."""
        write = self._validate(ds, req, now_ms)
        if self.store.document_hash(ds, req.document_id) == write.hash:
            existing = self.store.get_document(ds, req.document_id, with_text=False)
            if existing is not None:
                return AsyncUpsertResult(existing, None)
        chunker = SectionChunker(self.embedders.get(ds.embedder).tokenizer, ds.chunk_size)
        writes = chunk_writes(chunker, req.section)
        doc, job = self.store.write_pending_document(
            ds, replace(write, token_count=sum(w.token_count for w in writes)), now_ms
        )
        if job is not None and self.jobs is not None:
            self.jobs.notify()
        return AsyncUpsertResult(doc, job)

    def run_index_jobs(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        """The ``index_document`` job handler: for each job whose document still has the job's hash and is not yet
        indexed, chunk the stored section, embed the new chunks (all the batch's together; vectors of unchanged
        chunks reused by hash) and replace the chunks in one transaction that re-checks the hash and marks the job
        done. Obsolete jobs (a newer version, a delete) do no work. Returns each job's error or None."""
        out: dict[int, BaseException | None] = {}
        by_ds: dict[int, list[Job]] = {}
        for job in jobs:
            if job.data_source_id is None:
                out[job.id] = InvalidRequest(f"index job {job.id} names no data source")
            else:
                by_ds.setdefault(job.data_source_id, []).append(job)
        for ds_id, group in by_ds.items():
            ds = self.store.get_data_source_by_id(ds_id)
            if ds is None:  # deleted with its documents: nothing left to index
                out.update((j.id, None) for j in group)
                continue
            try:
                self._index_batch(ds, group, out)
            except Exception as exc:
                out.update((j.id, exc) for j in group if j.id not in out)
        return [out.get(j.id) for j in jobs]

    def _index_batch(self, ds: DataSource, jobs: Sequence[Job], out: dict[int, BaseException | None]) -> None:
        embedder = self.embedders.get(ds.embedder)
        chunker = SectionChunker(embedder.tokenizer, ds.chunk_size)
        prepared: list[tuple[Job, _Chunks]] = []
        for job in jobs:
            try:
                info = self.store.document_index_info(ds, job.payload_str("document_id"))
                if info is None or index_job_obsolete(job, (info.hash, info.index_state)):
                    out[job.id] = None
                    continue
                writes = chunk_writes(chunker, section_from_json(json.loads(info.section_json)))
                known = self.store.vectors_by_chunk_hash(ds, info.document_id)
                todo = [i for i, w in enumerate(writes) if w.hash not in known]
                prepared.append((job, _Chunks(writes, known, todo)))
            except (ValueError, AlexandriaError) as exc:  # ValueError: bad payload or stored JSON
                out[job.id] = InvalidRequest(str(exc)) if not isinstance(exc, AlexandriaError) else exc
        step = max(self.settings.embed_batch_size * 8, 1)
        writer = self.embedders.writer(ds.embedder)
        try:
            texts = [t for _, p in prepared for t in p.texts()]
            embedded = self._embed(writer, ds, texts, None, step)
        except Exception as exc:
            if len(prepared) == 1:
                out[prepared[0][0].id] = exc
                return
            for job, p in prepared:  # find the culprit: embed each document on its own
                try:
                    self._store_index(ds, job, p, self._embed(writer, ds, p.texts(), None, step))
                    out[job.id] = None
                except Exception as one:
                    out[job.id] = one
            return
        cursor = 0
        for job, p in prepared:
            try:
                self._store_index(ds, job, p, embedded[cursor : cursor + len(p.todo)])
                out[job.id] = None
            except Exception as exc:
                out[job.id] = exc
            cursor += len(p.todo)

    def _store_index(self, ds: DataSource, job: Job, p: _Chunks, embedded: Vectors) -> None:
        self.store.index_document(ds, job, p.chunks, p.vectors(embedded, ds.dim), int(time.time() * 1000))

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
