"""Documents (the synchronous upsert, deletion, re-parenting, reads) and the loading of chunks and documents for
search results, written once over the facade; chunk writes go through the engine's :class:`ChunkIndex`."""

from __future__ import annotations

import json
from collections.abc import Sequence

from alexandria.domain.models import DataSource, Document
from alexandria.ingest.base import Vectors
from alexandria.storage import rows
from alexandria.storage.base import ChunkWrite, DocumentWrite, StoredChunk
from alexandria.storage.chunk_index import ChunkIndex
from alexandria.storage.common.document_rows import (
    document_row,
    drop_files_of,
    forget_segments,
    locked_document,
    write_document_row,
    write_parent_rows,
)
from alexandria.storage.common.queue_rows import retire_queued
from alexandria.storage.database import Database, Row

CHUNK_COLS = "id, document_pk, chunk_offset, text, hash"


def _chunk(r: Row) -> StoredChunk:
    return StoredChunk(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]))


class Documents:
    """Documents and chunk loading of a store."""

    db: Database
    index: ChunkIndex

    # --- reads ---------------------------------------------------------------------------------------------------
    def _documents(self, where: str, params: Sequence[object], with_text: bool) -> list[Document]:
        cols = rows.DOCUMENT_COLS + (", text" if with_text else "")
        with self.db.read() as conn:
            found = conn.all(f"SELECT {cols} FROM documents WHERE {where}", params)
        return [rows.document(r, text=str(r[rows.DOCUMENT_TEXT_AT]) if with_text else None) for r in found]

    def get_document(self, ds: DataSource, document_id: str, with_text: bool) -> Document | None:
        found = self._documents("data_source_id = ? AND document_id = ?", (ds.id, document_id), with_text)
        return found[0] if found else None

    def list_documents(
        self, ds: DataSource, document_ids: Sequence[str] | None, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        """A page of ``ds``'s documents (newest first; only ``document_ids`` if given) and the count of all."""
        with self.db.snapshot() as conn:
            total = int(conn.scalar("SELECT count(*) FROM documents WHERE data_source_id = ?", (ds.id,)) or 0)
            where = "data_source_id = ?"
            params: list[object] = [ds.id]
            if document_ids is not None:
                where += f" AND {conn.dialect.any_of('document_id')}"
                params.append(conn.dialect.seq(document_ids))
            found = conn.all(
                f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE {where} ORDER BY timestamp DESC, id DESC "
                "LIMIT ? OFFSET ?",
                (*params, limit, offset),
            )
        return [rows.document(r) for r in found], total

    def document_hash(self, ds: DataSource, document_id: str) -> str | None:
        """The hash of the document's content if that content is indexed (None if missing, pending or failed)."""
        with self.db.read() as conn:
            found = conn.scalar(
                "SELECT hash FROM documents WHERE data_source_id = ? AND document_id = ? AND index_state = 'indexed'",
                (ds.id, document_id),
            )
        return None if found is None else str(found)

    def vectors_by_chunk_hash(self, ds: DataSource, document_id: str) -> dict[str, Vectors]:
        """The stored vectors of a document's chunks, by chunk hash (what a re-upsert can reuse)."""
        with self.db.read() as conn:
            found = conn.all(
                f"SELECT c.hash, c.{self.index.vector_column} FROM chunks c JOIN documents d ON d.id = c.document_pk "
                "WHERE d.data_source_id = ? AND d.document_id = ?",
                (ds.id, document_id),
            )
        return {str(h): self.index.stored_vector(v) for h, v in found}

    # --- writes --------------------------------------------------------------------------------------------------
    def upsert_document(
        self, ds: DataSource, doc: DocumentWrite, chunks: Sequence[ChunkWrite], vectors: Vectors
    ) -> Document:
        """Write a document and its chunks at once (indexed); replaces any previous version and its chunks."""
        with self.index.change(ds) as change:
            conn = change.conn
            now = rows.now_ms()
            counts = {"chunk_count": len(chunks), "token_count": doc.token_count}
            pk, existed = write_document_row(conn, ds.id, doc, now, "indexed", counts)
            if existed:
                change.remove_document(pk)
                retire_queued(conn, ds.id, doc.document_id, now)  # older async versions are obsolete
                forget_segments(conn, pk)  # Dust's chunker now owns the document
            change.add(pk, chunks, vectors)
            return document_row(conn, pk)

    def delete_document(self, ds: DataSource, document_id: str) -> bool:
        with self.index.change(ds) as change:
            conn = change.conn
            row = locked_document(conn, ds.id, document_id)
            if row is None:
                return False
            pk = int(row[0])
            change.remove_document(pk)
            drop_files_of(conn, "id = ?", (pk,))
            conn.execute("DELETE FROM documents WHERE id = ?", (pk,))
            retire_queued(conn, ds.id, document_id, rows.now_ms())
        return True

    def update_parents(self, ds: DataSource, document_id: str, parents: Sequence[str], parent_id: str | None) -> bool:
        with self.db.write() as conn:
            pk = conn.scalar(
                "UPDATE documents SET parents = ?, parent_id = ?, updated = ? "
                "WHERE data_source_id = ? AND document_id = ? RETURNING id",
                (json.dumps(list(parents)), parent_id, rows.now_ms(), ds.id, document_id),
            )
            if pk is None:
                return False
            conn.execute("DELETE FROM document_parents WHERE document_pk = ?", (pk,))
            write_parent_rows(conn, int(pk), parents)
        return True

    # --- loading -------------------------------------------------------------------------------------------------
    def _chunks(self, where: str, params: Sequence[object]) -> list[StoredChunk]:
        with self.db.read() as conn:
            return [_chunk(r) for r in conn.all(f"SELECT {CHUNK_COLS} FROM chunks WHERE {where}", params)]

    def load_chunks(self, chunk_pks: Sequence[int]) -> dict[int, StoredChunk]:
        if not chunk_pks:
            return {}
        any_id = self.db.dialect.any_of("id")
        return {c.pk: c for c in self._chunks(any_id, (self.db.dialect.seq(chunk_pks),))}

    def chunks_of_documents(self, document_pks: Sequence[int]) -> list[StoredChunk]:
        where = f"{self.db.dialect.any_of('document_pk')} ORDER BY document_pk, chunk_offset"
        return self._chunks(where, (self.db.dialect.seq(document_pks),))

    def chunks_at_offsets(self, document_pk: int, offsets: Sequence[int]) -> dict[int, StoredChunk]:
        where = f"document_pk = ? AND {self.db.dialect.any_of('chunk_offset')}"
        return {c.offset: c for c in self._chunks(where, (document_pk, self.db.dialect.seq(offsets)))}

    def documents_by_pk(self, pks: Sequence[int], with_text: bool) -> dict[int, Document]:
        found = self._documents(self.db.dialect.any_of("id"), (self.db.dialect.seq(pks),), with_text)
        return {d.pk: d for d in found}
