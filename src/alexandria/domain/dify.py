"""Domain objects of Dify's knowledge model over the core: segments, child chunks, metadata fields, tags, files.

A Dify dataset is a :class:`~alexandria.domain.models.DataSource` (its ``uuid`` is the dataset id, its ``dify`` dict
the dataset's settings); a Dify document is a :class:`~alexandria.domain.models.Document` (``uuid``, ``position``,
``enabled``, ``archived``, ``doc_metadata``, ``batch`` and the ``dify`` processing record). Plain dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChildChunk:
    pk: int
    uuid: str
    segment_pk: int
    document_pk: int
    position: int
    content: str
    word_count: int
    type: str  # automatic | customized
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class Segment:
    pk: int
    uuid: str
    data_source_id: int
    document_pk: int
    position: int
    content: str
    answer: str | None
    keywords: tuple[str, ...]
    hash: str
    index_node_id: str
    word_count: int
    tokens: int
    enabled: bool
    status: str  # waiting | indexing | completed | error | re_segment
    error: str | None
    hit_count: int
    created_at: int
    updated_at: int
    disabled_at: int | None
    indexing_at: int | None
    completed_at: int | None
    stopped_at: int | None
    children: tuple[ChildChunk, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class ChildWrite:
    content: str
    type: str = "automatic"


@dataclass(frozen=True)
class SegmentWrite:
    """A segment to store (content already cleaned and split); ``children`` for hierarchical documents."""

    content: str
    hash: str
    word_count: int
    tokens: int
    answer: str | None = None
    keywords: tuple[str, ...] = ()
    children: tuple[ChildWrite, ...] = ()


@dataclass(frozen=True)
class IndexUnit:
    """One text to index as a chunk: an enabled segment (text_model) or a child chunk (hierarchical_model)."""

    segment_pk: int
    child_pk: int | None
    text: str
    hash: str
    token_count: int


@dataclass(frozen=True)
class MetadataField:
    pk: int
    uuid: str
    data_source_id: int
    name: str
    type: str  # string | number | time
    created_at: int


@dataclass(frozen=True)
class DatasetTag:
    pk: int
    uuid: str
    workspace_id: int
    name: str
    binding_count: int
    created_at: int


@dataclass(frozen=True)
class UploadedFile:
    pk: int
    uuid: str
    workspace_id: int
    name: str
    size: int
    extension: str
    mime_type: str
    created_at: int


@dataclass(frozen=True)
class DatasetCounts:
    document_count: int
    word_count: int
    available_document_count: int
