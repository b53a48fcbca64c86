"""Domain objects. Plain dataclasses: no HTTP, no SQL."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class SpaceKind(enum.StrEnum):
    GLOBAL = "global"
    REGULAR = "regular"
    SYSTEM = "system"


#: the names of the built-in spaces and group every workspace has (as Dust names them)
GLOBAL_SPACE_NAME = "Company Data"
SYSTEM_SPACE_NAME = "Connection Admin"
GLOBAL_GROUP_NAME = "Workspace"


class Role(enum.StrEnum):
    ADMIN = "admin"
    BUILDER = "builder"
    USER = "user"
    SYSTEM = "system"


class SearchMode(enum.StrEnum):
    KEYWORD = "keyword"
    VECTOR = "vector"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class Workspace:
    id: int
    sid: str
    name: str
    created_at: int


@dataclass(frozen=True)
class Space:
    id: int
    sid: str
    workspace_id: int
    kind: SpaceKind
    name: str
    created_at: int
    updated_at: int
    restricted: bool = False  # a regular space open only to members of its groups
    group_ids: tuple[str, ...] = ()  # sIds of the groups attached to the space


@dataclass(frozen=True)
class DataSource:
    id: int
    sid: str
    workspace_id: int
    space_id: int
    name: str
    description: str | None
    created_at: int
    embedder: str
    dim: int
    chunk_size: int
    core_id: str  # opaque hex id, Dust's `dustAPIDataSourceId`
    connector_provider: str | None = None
    uuid: str = ""  # Dify's dataset id
    dify: dict[str, Any] = field(default_factory=dict, compare=False)  # Dify settings (indexing technique, ...)
    updated_at: int = 0


@dataclass(frozen=True)
class ApiKey:
    id: int
    workspace_id: int
    name: str
    role: Role
    prefix: str
    created_at: int
    disabled: bool = False
    data_source_id: int | None = None  # a key bound to one data source (Dify's dataset-scoped keys)

    @property
    def is_system(self) -> bool:
        return self.role is Role.SYSTEM


@dataclass(frozen=True)
class Principal:
    """Who is calling: a workspace key with its role and groups (Dust's Authenticator)."""

    workspace: Workspace
    key: ApiKey
    group_ids: frozenset[str] = frozenset()

    @property
    def is_system(self) -> bool:
        return self.key.is_system

    @property
    def role(self) -> Role:
        return self.key.role


@dataclass(frozen=True)
class Document:
    pk: int
    data_source_id: int
    document_id: str
    title: str
    mime_type: str
    source_url: str | None
    timestamp: int
    tags: tuple[str, ...]
    parents: tuple[str, ...]
    parent_id: str | None
    hash: str
    text_size: int
    chunk_count: int
    token_count: int
    created: int
    text: str | None = None  # loaded only on request
    uuid: str = ""  # Dify's document id (equal to ``document_id`` for documents written through Dify)
    position: int = 0
    enabled: bool = True  # False (disabled) or archived: out of every index, as in Dify
    archived: bool = False
    disabled_at: int | None = None
    index_state: str = "indexed"  # pending | parsing | splitting | indexing | indexed | failed
    index_error: str | None = None
    doc_metadata: dict[str, Any] = field(default_factory=dict, compare=False)  # metadata values by field name
    batch: str | None = None
    dify: dict[str, Any] | None = field(default=None, compare=False)  # Dify processing record; None: Dust-chunked
    updated: int = 0


@dataclass(frozen=True)
class ChunkHit:
    """One retrieved chunk with every signal's score (None where the signal was not computed)."""

    chunk_pk: int
    document_pk: int
    offset: int
    text: str
    hash: str
    score: float | None
    keyword_score: float | None = None
    vector_score: float | None = None
    expanded_offsets: tuple[int, ...] = ()


@dataclass(frozen=True)
class DocumentHits:
    """A document and the chunks of it that a search retrieved, best first."""

    document: Document
    chunks: list[ChunkHit] = field(default_factory=list)

    @property
    def best_score(self) -> float | None:
        return self.chunks[0].score if self.chunks else None


class GroupKind(enum.StrEnum):
    GLOBAL = "global"  # every key of the workspace
    REGULAR = "regular"


@dataclass(frozen=True)
class Group:
    id: int
    sid: str
    workspace_id: int
    name: str
    kind: GroupKind
    created_at: int


class ViewKind(enum.StrEnum):
    DEFAULT = "default"  # the whole data source, in its own space
    CUSTOM = "custom"  # the nodes under ``parents_in``, possibly in another space


@dataclass(frozen=True)
class DataSourceView:
    id: int
    sid: str
    workspace_id: int
    space_id: int
    data_source_id: int
    kind: ViewKind
    parents_in: tuple[str, ...] | None  # None: everything; (): nothing
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class Folder:
    """A node of a data source's hierarchy: documents, tables and folders list it in their ``parents``."""

    pk: int
    data_source_id: int
    folder_id: str
    title: str
    parents: tuple[str, ...]
    parent_id: str | None
    mime_type: str
    source_url: str | None
    provider_visibility: str | None
    timestamp: int
    created: int
