"""Domain objects of Dify's knowledge model over the core: segments, child chunks, metadata fields, tags, files.

A Dify dataset is a :class:`~alexandria.domain.models.DataSource` (its ``uuid`` is the dataset id, its ``dify`` dict
the dataset's settings); a Dify document is a :class:`~alexandria.domain.models.Document` (``uuid``, ``position``,
``enabled``, ``archived``, ``doc_metadata``, ``batch`` and the ``dify`` processing record). Plain dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alexandria.domain.models import Document


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


def searchable(enabled: bool, archived: bool) -> bool:
    """Whether a document with these flags has chunks in the indexes: only while it is enabled and not archived (a
    disabled or archived document keeps its segments but has no chunks, as in Dify)."""
    return enabled and not archived


#: The status of a document's segments while it waits to be re-split after its content or rule changed.
RE_SEGMENT = "re_segment"


def reusable_by_title(same_titled: list[Document]) -> Document | None:
    """The document a create of the same name reuses (Dify's rule): the oldest enabled Dify document of that name."""
    return next((d for d in same_titled if d.enabled and d.dify is not None), None)


@dataclass(frozen=True)
class DisplayCondition:
    """When a document shows ``status``: its index state is one of ``index_states`` and, where set, its ``archived``
    and ``enabled`` flags have these values."""

    status: str
    index_states: tuple[str, ...]
    archived: bool | None = None
    enabled: bool | None = None

    def holds(self, index_state: str, enabled: bool, archived: bool) -> bool:
        return (
            index_state in self.index_states and self.archived in (None, archived) and self.enabled in (None, enabled)
        )


#: Dify's ``Document.display_status`` (models/dataset.py), the one definition: the Python derivation
#: (:func:`display_status`) and the storage's SQL filter on a listing are both read from this table.
DISPLAY_CONDITIONS: tuple[DisplayCondition, ...] = (
    DisplayCondition("queuing", ("pending",)),
    DisplayCondition("indexing", ("parsing", "splitting", "indexing")),
    DisplayCondition("paused", ()),  # nothing pauses here
    DisplayCondition("error", ("failed",)),
    DisplayCondition("available", ("indexed",), archived=False, enabled=True),
    DisplayCondition("disabled", ("indexed",), archived=False, enabled=False),
    DisplayCondition("archived", ("indexed",), archived=True),
)
DISPLAY_STATUSES: tuple[str, ...] = tuple(c.status for c in DISPLAY_CONDITIONS)


def display_condition(status: str) -> DisplayCondition:
    for cond in DISPLAY_CONDITIONS:
        if cond.status == status:
            return cond
    raise ValueError(f"unknown display status {status!r}")


def display_status(doc: Document) -> str:
    """Dify's ``display_status`` of a document: the first of :data:`DISPLAY_CONDITIONS` that holds."""
    for cond in DISPLAY_CONDITIONS:
        if cond.holds(doc.index_state, doc.enabled, doc.archived):
            return cond.status
    raise ValueError(f"unknown index state {doc.index_state!r}")
