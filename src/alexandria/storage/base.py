"""The Store protocol: what the core needs from a storage backend. Backends implement it; services use only it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from alexandria.domain.filters import FilterSet
from alexandria.domain.models import ApiKey, DataSource, Document, Role, Space, Workspace
from alexandria.ingest.base import Vectors


@dataclass(frozen=True)
class DocumentWrite:
    document_id: str
    title: str
    mime_type: str
    source_url: str | None
    timestamp: int
    tags: tuple[str, ...]
    parents: tuple[str, ...]
    parent_id: str | None
    section_json: str
    text: str
    hash: str
    token_count: int


@dataclass(frozen=True)
class ChunkWrite:
    offset: int
    text: str
    hash: str
    token_count: int


@dataclass(frozen=True)
class StoredChunk:
    pk: int
    document_pk: int
    offset: int
    text: str
    hash: str


@dataclass(frozen=True)
class ScoredId:
    pk: int
    score: float


class Store(Protocol):
    # --- catalog -------------------------------------------------------------------------------------------------
    def create_workspace(self, sid: str, name: str) -> Workspace: ...
    def get_workspace(self, sid: str) -> Workspace | None: ...
    def get_workspace_by_id(self, workspace_id: int) -> Workspace | None: ...
    def ensure_global_space(self, workspace: Workspace) -> Space: ...
    def global_space(self, workspace_id: int) -> Space | None: ...
    def list_spaces(self, workspace_id: int) -> list[Space]: ...
    def get_space(self, workspace_id: int, sid: str) -> Space | None: ...
    def get_space_by_id(self, space_id: int) -> Space | None: ...
    def create_data_source(
        self,
        workspace_id: int,
        space_id: int,
        name: str,
        description: str | None,
        embedder: str,
        dim: int,
        chunk_size: int,
    ) -> DataSource: ...
    def list_data_sources(self, workspace_id: int, space_id: int | None) -> list[DataSource]: ...
    def get_data_source(self, workspace_id: int, sid_or_name: str) -> DataSource | None: ...
    def create_api_key(self, workspace_id: int, name: str, role: Role, key_hash: str, prefix: str) -> ApiKey: ...
    def get_api_key(self, key_hash: str) -> ApiKey | None: ...

    # --- documents -----------------------------------------------------------------------------------------------
    def get_document(self, ds: DataSource, document_id: str, with_text: bool) -> Document | None: ...
    def list_documents(
        self, ds: DataSource, document_ids: Sequence[str] | None, limit: int, offset: int
    ) -> tuple[list[Document], int]: ...
    def document_hash(self, ds: DataSource, document_id: str) -> str | None: ...
    def vectors_by_chunk_hash(self, ds: DataSource, document_id: str) -> dict[str, Vectors]: ...
    def upsert_document(
        self, ds: DataSource, doc: DocumentWrite, chunks: Sequence[ChunkWrite], vectors: Vectors
    ) -> Document: ...
    def delete_document(self, ds: DataSource, document_id: str) -> bool: ...
    def update_parents(
        self, ds: DataSource, document_id: str, parents: Sequence[str], parent_id: str | None
    ) -> bool: ...

    # --- search --------------------------------------------------------------------------------------------------
    def keyword_search(self, ds: DataSource, query: str, filters: FilterSet, k: int) -> list[ScoredId]: ...
    def vector_search(self, ds: DataSource, vector: Vectors, filters: FilterSet, k: int) -> list[ScoredId]: ...
    def vector_scores(self, ds: DataSource, vector: Vectors, chunk_pks: Sequence[int]) -> dict[int, float]: ...
    def latest_documents(self, ds: DataSource, filters: FilterSet, limit: int) -> list[int]: ...
    def load_chunks(self, chunk_pks: Sequence[int]) -> dict[int, StoredChunk]: ...
    def chunks_of_documents(self, document_pks: Sequence[int]) -> list[StoredChunk]: ...
    def chunks_at_offsets(self, document_pk: int, offsets: Sequence[int]) -> dict[int, StoredChunk]: ...
    def documents_by_pk(self, pks: Sequence[int], with_text: bool) -> dict[int, Document]: ...

    def close(self) -> None: ...
