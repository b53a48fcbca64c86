"""OpenAI's Files and Vector Stores over the core. Knows nothing of HTTP: ``api/openai/`` renders what this returns.

- A **file** is an upload of the workspace with a purpose (``StoredFile``); one uploaded with a key bound to a data
  source is confined to it (``scope_data_source_id``: only keys of that data source and unbound keys see it).
- A **vector store** is a data source (the ones made here carry Dify's settings, so Dify's door sees a dataset); its
  OpenAI name, metadata and expiry live in ``ds.dify["openai"]``.
- A **vector-store file** is a document whose id is the file's uuid, written as a file document of Dify's pipeline
  (``DifyService.write_file_document``): parsed by the existing parsers, split into windows of the model's tokens
  by the chunking strategy (``ingest/token_windows.py``), embedded by the durable queue's index job. Its
  ``attributes`` are the document's ``doc_metadata``, which every door's metadata filter reads; a file batch is a
  Dify batch.
- **Search** ranks chunks with the one search service, the metadata filter inside the ranking queries.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from alexandria.config import Settings
from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.domain.metadata_filter import MetadataFilter
from alexandria.domain.models import ChunkHit, DataSource, Document, Principal, SearchMode, Workspace
from alexandria.domain.openai import FileCounts, StoredFile
from alexandria.errors import InvalidRequest, NotFound
from alexandria.ingest import parsers
from alexandria.ingest.dify_rules import AUTOMATIC_RULE
from alexandria.search import fusion
from alexandria.services.access import AccessService
from alexandria.services.catalog import CatalogService
from alexandria.services.dify import DEFAULT_RETRIEVAL_MODEL, DifyService, new_batch
from alexandria.services.dify_segments import DifySegments
from alexandria.services.search import SearchService
from alexandria.storage.base import CatalogStore, DifyStore, DocumentStore, OpenAIFileStore

AUTO_CHUNKING = (800, 400)  # OpenAI's "auto": max_chunk_size_tokens 800, chunk_overlap_tokens 400
CANCELLED = "openai_cancelled"  # set in a document's processing record when its batch was cancelled


class OpenAIStores(CatalogStore, DocumentStore, DifyStore, OpenAIFileStore, Protocol):
    """The store roles ``VectorStoreService`` uses."""


@dataclass(frozen=True)
class Chunking:
    """A chunking strategy: ``static`` sizes (``auto`` is 800/400), in tokens."""

    max_tokens: int
    overlap: int
    auto: bool = False

    def windows(self) -> dict[str, int]:
        """The processing record's ``token_windows`` (``DifyService.run_index_job`` splits by them)."""
        return {"max_tokens": self.max_tokens, "overlap": self.overlap}

    def to_json(self) -> dict[str, Any]:
        return {"type": "static", "static": {"max_chunk_size_tokens": self.max_tokens,
                                              "chunk_overlap_tokens": self.overlap}}  # fmt: skip


AUTO = Chunking(*AUTO_CHUNKING, auto=True)


@dataclass(frozen=True)
class StoreInfo:
    ds: DataSource
    name: str
    metadata: dict[str, str]
    counts: FileCounts
    usage_bytes: int
    expires_after: dict[str, Any] | None
    last_active_at: int  # epoch s

    @property
    def expires_at(self) -> int | None:
        if not self.expires_after:
            return None
        return self.last_active_at + int(self.expires_after.get("days", 0)) * 86400

    @property
    def status(self) -> str:
        if self.expires_at is not None and self.expires_at <= time.time():
            return "expired"
        return "in_progress" if self.counts.in_progress else "completed"


@dataclass(frozen=True)
class BatchInfo:
    batch: str
    created_at: int  # epoch s
    counts: FileCounts
    documents: list[Document]

    @property
    def status(self) -> str:
        if self.counts.in_progress:
            return "in_progress"
        if self.counts.cancelled:
            return "cancelled"
        if self.counts.failed and self.counts.failed == self.counts.total:
            return "failed"
        return "completed"


@dataclass(frozen=True)
class SearchHit:
    document: Document
    chunks: list[ChunkHit]
    score: float


def file_status(doc: Document) -> str:
    """A vector-store file's status: ``cancelled`` once its batch was cancelled while it waited, else from its
    index state (waiting or running: ``in_progress``)."""
    if (doc.dify or {}).get(CANCELLED):
        return "cancelled"
    return {"indexed": "completed", "failed": "failed"}.get(doc.index_state, "in_progress")


def file_error_code(doc: Document) -> str:
    """``last_error.code`` of a failed file: its type is not one we parse, it could not be parsed, or we failed."""
    name = str(((doc.dify or {}).get("file") or {}).get("name") or doc.title)
    if parsers.extension_of(name) not in parsers.SUPPORTED_EXTENSIONS:
        return "unsupported_file"
    if (doc.index_error or "").startswith(("invalid ", "unsupported ")):
        return "invalid_file"
    return "server_error"


def chunking_of(doc: Document) -> dict[str, Any]:
    """The chunking strategy a vector-store file was indexed with (``other`` for documents written elsewhere)."""
    found = (doc.dify or {}).get("openai_chunking")
    return dict(found) if isinstance(found, Mapping) else {"type": "other"}


def count(docs: Sequence[Document]) -> FileCounts:
    tally = {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0}
    for doc in docs:
        tally[file_status(doc)] += 1
    return FileCounts(**tally)


def _normalized(score: float | None, rrf: bool) -> float:
    """A fused score on 0..1: convex fusion already is (min-max normalised signals); RRF is divided by the best
    score a chunk can have (first in both lists)."""
    value = score or 0.0
    if rrf:
        value /= 2.0 / (fusion.RRF_K + 1)
    return min(max(value, 0.0), 1.0)


class VectorStoreService:
    def __init__(
        self,
        store: OpenAIStores,
        catalog: CatalogService,
        dify: DifyService,
        segments: DifySegments,
        search: SearchService,
        access: AccessService,
        settings: Settings,
    ) -> None:
        self.access = access
        self.store = store
        self.catalog = catalog
        self.dify = dify
        self.segments = segments
        self.search_service = search
        self.settings = settings

    # --- files ---------------------------------------------------------------------------------------------------
    def create_file(self, who: Principal, filename: str, data: bytes, purpose: str) -> StoredFile:
        """Store an upload; one made with a key bound to a data source is confined to it."""
        limit = int(self.settings.upload_file_size_limit_mb * 1024 * 1024)
        if len(data) > limit:
            raise InvalidRequest(
                f"File size exceeded: {len(data)} bytes; the limit is {self.settings.upload_file_size_limit_mb:g} MB.",
                code="file_too_large",
            )
        ext = parsers.extension_of(filename)
        mime = parsers.MIME_TYPES.get(ext, "application/octet-stream")
        return self.store.save_openai_file(who.workspace.id, filename, ext, mime, data, purpose, who.key.data_source_id)

    def file(self, who: Principal, uuid: str) -> StoredFile:
        """The file ``uuid`` if the key sees it (``AccessService.sees_file``); NotFound otherwise."""
        found = self.store.get_openai_file(who.workspace.id, uuid)
        if found is None or not self.access.sees_file(
            who, found.scope_data_source_id, self.holders(who.workspace, [uuid])[uuid]
        ):
            raise NotFound(f"No such File object: file-{uuid}", code="file_not_found")
        return found

    def list_files(self, who: Principal, purpose: str | None) -> list[StoredFile]:
        """The files the key sees, oldest first."""
        found = self.store.list_openai_files(who.workspace.id, purpose, who.key.data_source_id)
        holders = self.holders(who.workspace, [f.uuid for f in found])
        return [f for f in found if self.access.sees_file(who, f.scope_data_source_id, holders[f.uuid])]

    def file_data(self, f: StoredFile) -> bytes:
        data = self.store.file_data(f.uuid)
        if data is None:
            raise NotFound(f"No such File object: {f.file_id}", code="file_not_found")
        return data

    def holders(self, workspace: Workspace, uuids: Sequence[str]) -> dict[str, list[DataSource]]:
        """For each file, the vector stores holding it."""
        out: dict[str, list[DataSource]] = {}
        for uuid, ids in self.store.data_sources_holding(workspace.id, uuids).items():
            found = (self.store.get_data_source_by_id(i) for i in ids)
            out[uuid] = [ds for ds in found if ds is not None]
        return out

    def delete_file(self, workspace: Workspace, f: StoredFile) -> None:
        """Delete a file and remove it from every vector store holding it (as OpenAI does)."""
        for ds in self.holders(workspace, [f.uuid])[f.uuid]:
            self.store.delete_document(ds, f.uuid)
        self.store.delete_openai_file(workspace.id, f.uuid)

    # --- vector stores -------------------------------------------------------------------------------------------
    def create_store(
        self,
        workspace: Workspace,
        name: str | None,
        description: str | None,
        metadata: Mapping[str, str],
        expires_after: Mapping[str, Any] | None,
    ) -> DataSource:
        openai = {"name": name or "", "metadata": dict(metadata), "expires_after": expires_after,
                  "last_active_at": int(time.time())}  # fmt: skip
        dify = {"indexing_technique": "high_quality", "permission": "only_me", "provider": "vendor",
                "retrieval_model": dict(DEFAULT_RETRIEVAL_MODEL), "doc_form": "text_model",
                "built_in_field_enabled": False, "enable_api": True, "openai": openai}  # fmt: skip
        unique = f"{name or 'vector store'} {secrets.token_hex(4)}"  # data source names are unique, store names not
        return self.catalog.create_data_source(
            workspace, unique, description=description or "", check_name=False, dify=dify
        )

    def update_store(self, ds: DataSource, changes: Mapping[str, Any]) -> DataSource:
        """``changes``: any of ``name``, ``metadata``, ``expires_after`` (already validated)."""
        dify = dict(ds.dify)
        openai = {**self._openai(ds), **changes}
        if "name" in changes and changes["name"] is None:
            openai["name"] = ""
        dify["openai"] = openai
        return self.store.update_data_source(ds, ds.name, ds.description, dify)

    def delete_store(self, ds: DataSource) -> None:
        self.store.delete_data_source(ds)

    @staticmethod
    def _openai(ds: DataSource) -> dict[str, Any]:
        found = ds.dify.get("openai")
        if isinstance(found, Mapping):
            return dict(found)
        return {"name": ds.name, "metadata": {}, "expires_after": None, "last_active_at": ds.created_at // 1000}

    def documents(self, ds: DataSource) -> list[Document]:
        """Every document of the store (its files), oldest first."""
        docs, _ = self.store.list_dify_documents(ds, None, None, 1 << 62, 0)
        return sorted(docs, key=lambda d: (d.created, d.pk))

    def info(self, ds: DataSource) -> StoreInfo:
        docs = self.documents(ds)
        usage = sum(self._size(d) for d in docs if file_status(d) == "completed")
        openai = self._openai(ds)
        metadata = openai.get("metadata") if isinstance(openai.get("metadata"), Mapping) else {}
        last_active = int(openai.get("last_active_at") or ds.created_at // 1000)
        return StoreInfo(ds, str(openai.get("name") or ""), dict(metadata or {}), count(docs), usage,
                         openai.get("expires_after"), last_active)  # fmt: skip

    @staticmethod
    def _size(doc: Document) -> int:
        size = ((doc.dify or {}).get("file") or {}).get("size")
        return int(size) if isinstance(size, int) else doc.text_size

    # --- vector-store files --------------------------------------------------------------------------------------
    def attach(
        self,
        ds: DataSource,
        files: Sequence[tuple[StoredFile, Chunking, Mapping[str, Any] | None]],
        batch: str | None = None,
    ) -> tuple[str, list[Document]]:
        """Add each file (with its chunking strategy and attributes) to the store as a document queued for
        indexing, in one batch; returns the batch and the documents."""
        batch = batch or new_batch()
        out: list[Document] = []
        for f, chunking, attributes in files:
            file = {"id": f.uuid, "name": f.name, "size": f.size, "extension": f.extension, "mime_type": f.mime_type,
                    "created_at": f.created_at / 1000}  # fmt: skip
            extra = {"openai_chunking": chunking.to_json(), "token_windows": chunking.windows()}
            doc = self.dify.write_file_document(ds, f.uuid, f.name, file, AUTOMATIC_RULE, batch, extra)
            values = dict(attributes or {})
            self.store.set_doc_metadata(doc.pk, values)
            out.append(replace(doc, doc_metadata=values))
        return batch, out

    def vs_file(self, ds: DataSource, uuid: str) -> Document:
        doc = self.store.get_document(ds, uuid, with_text=False)
        if doc is None:
            raise NotFound(f"No file found with id 'file-{uuid}' in vector store.", code="file_not_found")
        return doc

    def set_attributes(self, ds: DataSource, doc: Document, attributes: Mapping[str, Any] | None) -> Document:
        values = dict(attributes or {})
        self.store.set_doc_metadata(doc.pk, values)
        return replace(doc, doc_metadata=values)

    def detach(self, ds: DataSource, doc: Document) -> None:
        self.store.delete_document(ds, doc.document_id)

    def text(self, ds: DataSource, doc: Document) -> str:
        """The file's parsed text as the store holds it ("" until it is parsed)."""
        stored = self.store.get_document(ds, doc.document_id, with_text=True)
        return (stored.text or "") if stored is not None and stored.index_state == "indexed" else ""

    # --- batches -------------------------------------------------------------------------------------------------
    def batch(self, ds: DataSource, batch: str) -> BatchInfo:
        docs = self.store.documents_in_batch(ds, batch)
        if not docs:
            raise NotFound(f"No file batch found with id 'vsfb_{batch}'.", code="batch_not_found")
        return BatchInfo(batch, min(d.created for d in docs) // 1000, count(docs), docs)

    def cancel_batch(self, ds: DataSource, batch: str) -> BatchInfo:
        """Cancel the batch's files still in progress: each is marked cancelled and taken out of the indexes
        (disabled: its index job stores no chunks for it); files already done stay as they are."""
        for doc in self.batch(ds, batch).documents:
            if file_status(doc) != "in_progress":
                continue
            self.store.patch_dify_record(doc.pk, {CANCELLED: True})
            self.store.set_document_flags(ds, doc.pk, enabled=False)
            now = self.store.get_document(ds, doc.document_id, with_text=False)
            if now is not None and now.index_state == "indexed":  # its job finished meanwhile
                self.segments.sync_chunks(ds, now)
        return self.batch(ds, batch)

    # --- search --------------------------------------------------------------------------------------------------
    def search(
        self,
        ds: DataSource,
        queries: Sequence[str],
        metadata: MetadataFilter | None,
        max_results: int,
        score_threshold: float,
    ) -> list[SearchHit]:
        """The best chunks for the queries (several: each chunk keeps its best score), the filter applied inside
        the ranking, scores normalised to 0..1, those under ``score_threshold`` dropped."""
        filters = FilterSet((DocumentFilter(metadata=metadata),)) if metadata is not None else FilterSet()
        rrf = self.settings.fusion == "rrf"
        best: dict[int, ChunkHit] = {}
        for query in queries:
            if not query.strip():
                continue
            for hit in self.search_service.rank_chunks(ds, query, SearchMode.HYBRID, filters, max_results):
                hit = replace(hit, score=_normalized(hit.score, rrf))
                if hit.chunk_pk not in best or (best[hit.chunk_pk].score or 0) < (hit.score or 0):
                    best[hit.chunk_pk] = hit
        ranked = sorted(best.values(), key=lambda h: (-(h.score or 0.0), h.chunk_pk))
        ranked = [h for h in ranked if (h.score or 0.0) >= score_threshold][:max_results]
        docs = self.search_service.documents_by_pk([h.document_pk for h in ranked])
        return [SearchHit(docs[h.document_pk], [h], h.score or 0.0) for h in ranked if h.document_pk in docs]
