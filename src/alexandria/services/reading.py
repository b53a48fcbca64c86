"""Reading a knowledge base the way an agent does: exact-string grep over documents, a chunk with its neighbours, a
document by character or line range, and an index job by its handle. Used by the MCP door (``api/mcp``); access
checks happen before (``services/access.py``): every method here takes an already resolved data source."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from alexandria.domain.jobs import Job
from alexandria.domain.models import DataSource, Document
from alexandria.errors import InvalidRequest, NotFound
from alexandria.storage.base import Store, StoredChunk

GREP_PAGE = 100  # documents loaded (with their text) at a time while grepping
MAX_PATTERN = 1000


@dataclass(frozen=True)
class GrepMatch:
    document: Document
    line: int  # 1-based line number in the document's text
    text: str  # the matching line


@dataclass(frozen=True)
class GrepResult:
    matches: list[GrepMatch]
    scanned_documents: int
    truncated: bool  # stopped at ``max_matches``: more documents may match


@dataclass(frozen=True)
class DocumentRange:
    document: Document
    text: str
    offset: int
    total_chars: int
    total_lines: int
    next_offset: int | None  # where the next range starts; None at the end of the document


@dataclass(frozen=True)
class ChunkContext:
    document: Document
    chunks: list[StoredChunk]  # in document order, the asked-for chunk among them


class ReadingService:
    def __init__(self, store: Store) -> None:
        self.store = store

    def document(self, ds: DataSource, document_id: str) -> Document:
        doc = self.store.get_document(ds, document_id, with_text=True)
        if doc is None:
            raise NotFound(f"No document found for id `{document_id}`.", code="document_not_found")
        return doc

    def grep(
        self,
        ds: DataSource,
        pattern: str,
        *,
        case_insensitive: bool = True,
        document_id: str | None = None,
        max_matches: int = 50,
    ) -> GrepResult:
        """Lines containing ``pattern`` (a literal string, never a regex), document by document in the data source's
        listing order; every document is scanned until ``max_matches`` lines matched."""
        if not pattern or len(pattern) > MAX_PATTERN:
            raise InvalidRequest(f"pattern must be 1 to {MAX_PATTERN} characters.")
        if max_matches < 1:
            raise InvalidRequest("max_matches must be at least 1.")
        needle = pattern.casefold() if case_insensitive else pattern
        matches: list[GrepMatch] = []
        scanned = 0
        for doc in self._documents_with_text(ds, document_id):
            scanned += 1
            for number, line in enumerate((doc.text or "").splitlines(), start=1):
                hay = line.casefold() if case_insensitive else line
                if needle in hay:
                    if len(matches) == max_matches:
                        return GrepResult(matches, scanned, truncated=True)
                    matches.append(GrepMatch(doc, number, line))
        return GrepResult(matches, scanned, truncated=False)

    def _documents_with_text(self, ds: DataSource, document_id: str | None) -> Iterable[Document]:
        if document_id is not None:
            return [self.document(ds, document_id)]
        return _Pages(self.store, ds)

    def read_range(
        self,
        ds: DataSource,
        document_id: str,
        *,
        offset: int = 0,
        max_chars: int = 10_000,
        start_line: int | None = None,
        end_line: int | None = None,
    ) -> DocumentRange:
        """Characters ``[offset, offset + max_chars)`` of the document's text, or its lines ``start_line`` to
        ``end_line`` (1-based, inclusive; still at most ``max_chars``)."""
        if offset < 0 or max_chars < 1:
            raise InvalidRequest("offset must be non-negative and max_chars at least 1.")
        doc = self.document(ds, document_id)
        text = doc.text or ""
        lines = text.splitlines(keepends=True)
        if start_line is not None or end_line is not None:
            first = start_line or 1
            last = end_line if end_line is not None else len(lines)
            if first < 1 or last < first:
                raise InvalidRequest("start_line must be at least 1 and end_line at least start_line.")
            offset = sum(len(line) for line in lines[: first - 1])
            max_chars = min(max_chars, sum(len(line) for line in lines[first - 1 : last]))
        piece = text[offset : offset + max_chars]
        end = offset + len(piece)
        return DocumentRange(doc, piece, offset, len(text), len(lines), end if end < len(text) else None)

    def chunk_context(
        self, ds: DataSource, document_id: str, chunk_index: int, before: int, after: int
    ) -> ChunkContext:
        """Chunk ``chunk_index`` of a document with up to ``before`` chunks before it and ``after`` after it."""
        if chunk_index < 0 or before < 0 or after < 0:
            raise InvalidRequest("chunk_index, before and after must be non-negative.")
        doc = self.store.get_document(ds, document_id, with_text=False)
        if doc is None:
            raise NotFound(f"No document found for id `{document_id}`.", code="document_not_found")
        if chunk_index >= doc.chunk_count:
            raise InvalidRequest(
                f"Document `{document_id}` has {doc.chunk_count} chunks (0 to {doc.chunk_count - 1}); "
                f"there is no chunk {chunk_index}."
            )
        wanted = list(range(max(0, chunk_index - before), min(doc.chunk_count, chunk_index + after + 1)))
        found = self.store.chunks_at_offsets(doc.pk, wanted)
        return ChunkContext(doc, [found[o] for o in wanted if o in found])

    def job(self, job_id: int) -> Job | None:
        return self.store.get_job(job_id)


class _Pages:
    """The data source's documents with their text, loaded a page at a time."""

    def __init__(self, store: Store, ds: DataSource) -> None:
        self.store = store
        self.ds = ds

    def __iter__(self) -> Iterator[Document]:
        offset = 0
        while True:
            page, _ = self.store.list_documents(self.ds, None, GREP_PAGE, offset)
            if not page:
                return
            with_text = self.store.documents_by_pk([d.pk for d in page], with_text=True)
            for d in page:
                full = with_text.get(d.pk)
                if full is not None:
                    yield full
            offset += len(page)
