"""Dify segments and child chunks: planning them from a document's text with Dify's rules, editing them, and
keeping the document's chunks (what the indexes hold) in step: one chunk per enabled segment, or per child chunk
of a hierarchical segment; none at all for a disabled or archived document."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from alexandria.config import Settings
from alexandria.domain.dify import RE_SEGMENT, ChildChunk, ChildWrite, Segment, SegmentWrite, searchable
from alexandria.domain.models import DataSource, Document
from alexandria.errors import InvalidRequest, NotFound
from alexandria.ingest import dify_rules
from alexandria.ingest.base import Tokenizer
from alexandria.ingest.chunkers import SectionChunker
from alexandria.ingest.dify_rules import ProcessRule
from alexandria.ingest.hashing import chunk_hash
from alexandria.ingest.token_windows import token_windows
from alexandria.services.documents import chunk_writes, section_from_json
from alexandria.services.embedders import EmbedderRegistry
from alexandria.storage.base import ChunkWrite, DifyStore, DocumentStore


def plan_segments(
    text: str, rule: ProcessRule, doc_form: str, count_tokens: Callable[[str], int]
) -> list[SegmentWrite]:
    """Clean and split ``text`` as Dify does: segments (with their child chunks for ``hierarchical_model``)."""
    if doc_form == "hierarchical_model":
        return [
            SegmentWrite(
                content=p.content,
                hash=p.hash,
                word_count=len(p.content),
                tokens=count_tokens(p.content),
                children=tuple(ChildWrite(c.content) for c in p.children),
            )
            for p in dify_rules.split_hierarchical(text, rule)
        ]
    return [
        SegmentWrite(content=c.content, hash=c.hash, word_count=len(c.content), tokens=count_tokens(c.content))
        for c in dify_rules.split_text(text, rule)
    ]


def window_segments(text: str, tokenizer: Tokenizer, max_tokens: int, overlap: int) -> list[SegmentWrite]:
    """Segments of overlapping token windows (OpenAI's static chunking, ``ingest/token_windows.py``)."""
    return [
        SegmentWrite(content=c, hash=dify_rules.text_hash(c), word_count=len(c), tokens=tokenizer.count(c))
        for c in token_windows(text, tokenizer.spans(text), max_tokens, overlap)
    ]


def invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_param")


def _keywords(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise invalid("keywords must be a list of strings.")
    return tuple(value)


class SegmentStores(DocumentStore, DifyStore, Protocol):
    """The store roles ``DifySegments`` uses."""


class DifySegments:
    def __init__(self, store: SegmentStores, embedders: EmbedderRegistry, settings: Settings) -> None:
        self.store = store
        self.embedders = embedders
        self.settings = settings
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, document_pk: int) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(document_pk, threading.Lock())

    # --- chunks from segments ------------------------------------------------------------------------------------
    def sync_chunks(self, ds: DataSource, doc: Document) -> None:
        """Rebuild the document's chunks from its current segments (or, for a Dust document, from its section),
        embedding only texts whose vectors are not already stored."""
        with self._lock(doc.pk):
            fresh = self.store.get_document_by_uuid(ds, doc.uuid) or doc
            embedder = self.embedders.get(ds.embedder)
            chunks: list[ChunkWrite] = []
            if searchable(fresh.enabled, fresh.archived):
                if fresh.dify is None:
                    chunks = self._section_chunks(ds, fresh)
                else:
                    for seg in self.store.document_segments(fresh.pk):
                        if not seg.enabled or seg.status != "completed":
                            continue
                        units: list[tuple[int | None, str]] = [(c.pk, c.content) for c in seg.children]
                        units = units or [(None, seg.content)]
                        for child_pk, text in units:
                            count = embedder.tokenizer.count(text)
                            chunks.append(ChunkWrite(len(chunks), text, chunk_hash(text), count, seg.pk, child_pk))
            known = self.store.vectors_by_chunk_hash(ds, fresh.document_id)
            todo = [i for i, c in enumerate(chunks) if c.hash not in known]
            vectors = np.zeros((len(chunks), ds.dim), dtype=np.float32)
            if todo:
                embedded = self.embedders.writer(ds.embedder).embed([chunks[i].text for i in todo])
                for row, i in enumerate(todo):
                    vectors[i] = embedded[row]
            for i, c in enumerate(chunks):
                if c.hash in known:
                    vectors[i] = known[c.hash]
            self.store.replace_document_chunks(ds, fresh.pk, chunks, vectors)
            if fresh.dify is not None:
                segs = self.store.document_segments(fresh.pk)
                self.store.patch_dify_record(
                    fresh.pk,
                    {"word_count": sum(s.word_count for s in segs), "tokens": sum(s.tokens for s in segs)},
                )

    def _section_chunks(self, ds: DataSource, doc: Document) -> list[ChunkWrite]:
        found = self.store.document_section(ds, doc.document_id)
        if found is None:
            return []
        chunker = SectionChunker(self.embedders.get(ds.embedder).tokenizer, ds.chunk_size)
        return chunk_writes(chunker, section_from_json(json.loads(found[2])))

    # --- segments ------------------------------------------------------------------------------------------------
    def _check_editable(self, doc: Document) -> None:
        if doc.index_state != "indexed":
            raise NotFound("Document is not completed.", code="document_not_completed")
        if not doc.enabled:
            raise NotFound("Document is disabled.", code="document_disabled")
        if doc.dify is None:
            raise invalid(
                "This document was written through the Dust API and is chunked by Dust's section chunker; its "
                "chunks are read-only through Dify's segment API."
            )

    def _segment_write(
        self, ds: DataSource, doc: Document, content: str, answer: str | None, keywords: Any
    ) -> SegmentWrite:
        count = self.embedders.get(ds.embedder).tokenizer.count
        children: tuple[ChildWrite, ...] = ()
        record = doc.dify or {}
        if record.get("doc_form") == "hierarchical_model":
            rule = dify_rules.parse_process_rule(record["process_rule"])
            children = tuple(
                ChildWrite(c.content)
                for p in dify_rules.split_hierarchical(content, _paragraph_parent(rule))
                for c in p.children
            )
        return SegmentWrite(
            content=content,
            hash=dify_rules.text_hash(content),
            word_count=len(content) + len(answer or ""),
            tokens=count(content + (answer or "")),
            answer=answer,
            keywords=_keywords(keywords),
            children=children,
        )

    def create_segments(self, ds: DataSource, doc: Document, items: Sequence[Mapping[str, Any]]) -> list[Segment]:
        self._check_editable(doc)
        if len(items) > self.settings.dify_max_segments_per_request:
            raise invalid(f"Exceeded maximum segments limit of {self.settings.dify_max_segments_per_request}.")
        writes = []
        for item in items:
            content = item.get("content")
            if not isinstance(content, str) or not content.strip():
                raise invalid("Content is empty")
            answer = item.get("answer")
            if answer is not None and not isinstance(answer, str):
                raise invalid("answer must be a string.")
            writes.append(self._segment_write(ds, doc, content, answer, item.get("keywords")))
        pks = self.store.add_segments(ds, doc.pk, writes)
        self.sync_chunks(ds, doc)
        found = self.store.segments_by_pk(pks)
        return [found[pk] for pk in pks if pk in found]

    def segments(self, doc: Document) -> list[Segment]:
        """All segments of a document, in position order."""
        return self.store.document_segments(doc.pk)

    def list_segments(
        self, doc: Document, statuses: Sequence[str], keyword: str | None, limit: int, offset: int
    ) -> tuple[list[Segment], int]:
        """A page of a document's segments (of ``statuses`` if any, containing ``keyword`` if set) and their total."""
        return self.store.list_segments(doc.pk, statuses, keyword, limit, offset)

    def progress(self, doc: Document) -> tuple[int, int]:
        """``(segments, completed)`` of a document being indexed, segments being re-split not counted."""
        counted = [s for s in self.store.document_segments(doc.pk) if s.status != RE_SEGMENT]
        return len(counted), sum(1 for s in counted if s.completed_at is not None)

    def segment(self, doc: Document, segment_id: str) -> Segment:
        seg = self.store.get_segment(doc.pk, segment_id)
        if seg is None:
            raise NotFound("Segment not found.", code="segment_not_found")
        return seg

    def update_segment(self, ds: DataSource, doc: Document, seg: Segment, body: Mapping[str, Any]) -> Segment:
        self._check_editable(doc)
        enabled = body.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise invalid("enabled must be a boolean.")
        if enabled is False:
            self.store.update_segment(seg.pk, enabled=False)
            self.sync_chunks(ds, doc)
            return self.segment(doc, seg.uuid)
        if not seg.enabled and enabled is not True:
            raise invalid("Can't update disabled segment")
        content = body.get("content")
        if content is not None and (not isinstance(content, str) or not content.strip()):
            raise invalid("Content is empty")
        answer = body.get("answer", seg.answer)
        regenerate = bool(body.get("regenerate_child_chunks"))
        write = None
        if content is not None and (content != seg.content or answer != seg.answer or "keywords" in body):
            write = self._segment_write(ds, doc, content, answer, body.get("keywords", list(seg.keywords)))
        elif "keywords" in body:
            write = self._segment_write(ds, doc, seg.content, seg.answer, body["keywords"])
            write = SegmentWrite(
                write.content, write.hash, write.word_count, write.tokens, write.answer, write.keywords
            )
        children = None
        if write is not None and write.children and (regenerate or content != seg.content):
            children = write.children
        self.store.update_segment(seg.pk, content=write, enabled=True if enabled else None, children=children)
        self.sync_chunks(ds, doc)
        return self.segment(doc, seg.uuid)

    def delete_segment(self, ds: DataSource, doc: Document, seg: Segment) -> None:
        self._check_editable(doc)
        self.store.delete_segment(seg.pk)
        self.sync_chunks(ds, doc)

    # --- child chunks --------------------------------------------------------------------------------------------
    def child(self, seg: Segment, child_id: str) -> ChildChunk:
        for c in seg.children:
            if c.uuid == child_id:
                return c
        raise NotFound("Child chunk not found.", code="child_chunk_not_found")

    def _check_hierarchical(self, doc: Document) -> None:
        self._check_editable(doc)
        if (doc.dify or {}).get("doc_form") != "hierarchical_model":
            raise invalid("Child chunks exist only in documents with doc_form hierarchical_model.")

    @staticmethod
    def _content(body: Mapping[str, Any]) -> str:
        content = body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise invalid("Content is empty")
        return content

    def create_child(self, ds: DataSource, doc: Document, seg: Segment, body: Mapping[str, Any]) -> ChildChunk:
        self._check_hierarchical(doc)
        child = self.store.add_child_chunk(seg, self._content(body))
        self.sync_chunks(ds, doc)
        return child

    def update_child(self, ds: DataSource, doc: Document, child: ChildChunk, body: Mapping[str, Any]) -> ChildChunk:
        self._check_hierarchical(doc)
        updated = self.store.update_child_chunk(child.pk, self._content(body))
        self.sync_chunks(ds, doc)
        return updated

    def delete_child(self, ds: DataSource, doc: Document, child: ChildChunk) -> None:
        self._check_hierarchical(doc)
        self.store.delete_child_chunk(child.pk)
        self.sync_chunks(ds, doc)


def _paragraph_parent(rule: ProcessRule) -> ProcessRule:
    """The rule that splits one new segment into child chunks: the segment is the (single) parent."""
    return replace(rule, parent_mode="full-doc")
