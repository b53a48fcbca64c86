"""The typed filter tree applied to documents, compiled per backend, plus a pure-Python reference evaluator."""

from __future__ import annotations

from dataclasses import dataclass

from alexandria.domain.metadata_filter import MetadataFilter, matches_metadata
from alexandria.domain.models import Document


@dataclass(frozen=True)
class DocumentFilter:
    """Dust's filter: every constraint that is set must hold (AND).

    ``tags_in``/``parents_in`` mean "at least one of" (an empty tuple matches nothing); ``*_not`` mean "none of";
    ``timestamp_gt``/``timestamp_lt`` are inclusive bounds in epoch milliseconds (as Dust's core does it).
    """

    tags_in: tuple[str, ...] | None = None
    tags_not: tuple[str, ...] | None = None
    parents_in: tuple[str, ...] | None = None
    parents_not: tuple[str, ...] | None = None
    timestamp_gt: int | None = None
    timestamp_lt: int | None = None
    metadata: MetadataFilter | None = None  # Dify's metadata_filtering_conditions over ``doc_metadata``

    def is_empty(self) -> bool:
        return all(
            v is None
            for v in (
                self.metadata,
                self.tags_in,
                self.tags_not,
                self.parents_in,
                self.parents_not,
                self.timestamp_gt,
                self.timestamp_lt,
            )
        )


@dataclass(frozen=True)
class FilterSet:
    """A conjunction of filters (the request's filter AND a view's restriction, ...)."""

    filters: tuple[DocumentFilter, ...] = ()

    def is_empty(self) -> bool:
        return all(f.is_empty() for f in self.filters)


def matches(doc: Document, flt: DocumentFilter) -> bool:
    """Reference evaluator: does ``doc`` satisfy ``flt``? Used by tests to check compiled filters."""
    tags, parents = set(doc.tags), set(doc.parents)
    if flt.tags_in is not None and not tags.intersection(flt.tags_in):
        return False
    if flt.tags_not is not None and tags.intersection(flt.tags_not):
        return False
    if flt.parents_in is not None and not parents.intersection(flt.parents_in):
        return False
    if flt.parents_not is not None and parents.intersection(flt.parents_not):
        return False
    if flt.timestamp_gt is not None and doc.timestamp < flt.timestamp_gt:
        return False
    if flt.metadata is not None and not matches_metadata(doc.doc_metadata, flt.metadata):
        return False
    return not (flt.timestamp_lt is not None and doc.timestamp > flt.timestamp_lt)


def matches_all(doc: Document, filters: FilterSet) -> bool:
    return all(matches(doc, f) for f in filters.filters)
