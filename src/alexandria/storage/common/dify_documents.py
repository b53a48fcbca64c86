"""Dify documents, written once for both engines over the facade: their rows and pipeline states, their processing
records (``documents.dify``), and the end of their index job, which replaces their segments and, through the
per-engine :class:`~alexandria.storage.chunk_index.ChunkIndex`, their chunks.

Processing records are merged as RFC 7396 JSON merge patches (a null removes a key, objects merge recursively), in
Python under the document's row lock (``locked_document``; SQLite's single writer needs none). The rules about what
to write (which batch, the status of a rewritten document's segments, which same-named document a create reuses,
what each display status means) belong to ``services/dify.py`` and ``domain/dify.py``; this module only stores."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alexandria.domain import dify as rules
from alexandria.domain.dify import SegmentWrite
from alexandria.domain.jobs import INDEX_DIFY_DOCUMENT, Job, JobState
from alexandria.domain.models import DataSource, Document
from alexandria.errors import InvalidRequest
from alexandria.ingest.base import Vectors
from alexandria.ingest.hashing import chunk_hash
from alexandria.storage import rows
from alexandria.storage.base import ChunkWrite, DocumentWrite
from alexandria.storage.chunk_index import ChunkIndex
from alexandria.storage.common.dify_segments import insert_segment
from alexandria.storage.common.document_rows import document_row, drop_files_of, locked_document, write_document_row
from alexandria.storage.common.queue_rows import finish_job, index_target, queue_index_job
from alexandria.storage.database import Database, Dialect


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` patched by ``patch`` (RFC 7396 JSON merge patch)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def display_sql(dialect: Dialect, status: str) -> tuple[str, list[object]]:
    """The condition (SQL over ``documents``, and its parameters) of a display status, from the one table of them
    (:data:`alexandria.domain.dify.DISPLAY_CONDITIONS`)."""
    cond = rules.display_condition(status)
    if not cond.index_states:
        return "FALSE", []
    parts, params = [dialect.any_of("index_state")], [dialect.seq(cond.index_states)]
    for column, value in (("archived", cond.archived), ("enabled", cond.enabled)):
        if value is not None:
            parts.append(f"{column} = ?")
            params.append(value)
    return " AND ".join(parts), params


def _merged(stored: object, updates: Mapping[str, Any]) -> str:
    """A stored processing record with ``updates`` merged in, as JSON text (its row locked by the caller)."""
    return json.dumps(merge_patch(rows.js(stored, {}), dict(updates)))


def _hashed(chunks: Sequence[ChunkWrite]) -> list[ChunkWrite]:
    """Give each chunk its text hash (the key vectors are reused by)."""
    return [ChunkWrite(c.offset, c.text, chunk_hash(c.text), c.token_count, c.segment_pk, c.child_pk) for c in chunks]


class DifyDocumentRows:
    """Dify documents of :class:`SqliteStore` and :class:`PostgresStore`."""

    db: Database
    index: ChunkIndex

    def write_dify_document(
        self,
        ds: DataSource,
        doc: DocumentWrite,
        dify: Mapping[str, Any],
        batch: str,
        now_ms: int,
        segment_status: str,
    ) -> tuple[Document, Job]:
        """Store a Dify document's content as ``pending`` (Dify's "waiting") in ``batch``, with its processing
        record ``dify``, and queue its index job, in one transaction. An existing document of that id is updated in
        place: its segments take ``segment_status`` until the job replaces them, and its stored file goes unless
        ``dify`` still names it."""
        with self.db.write() as conn:
            locked_document(conn, ds.id, doc.document_id)
            file_id = (dify.get("file") or {}).get("id")
            file_of = conn.dialect.json_text("dify", "file", "id")
            drop_files_of(conn, f"data_source_id = ? AND document_id = ? AND {file_of} <> ?",
                          (ds.id, doc.document_id, None if file_id is None else str(file_id)))  # fmt: skip
            columns = {"dify": json.dumps(dict(dify)), "batch": batch}
            pk, _ = write_document_row(conn, ds.id, doc, now_ms, "pending", columns, new_uuid=doc.document_id)
            conn.execute(
                "UPDATE segments SET status = ?, updated_at = ? WHERE document_pk = ?", (segment_status, now_ms, pk)
            )
            job = queue_index_job(conn, ds, doc, now_ms, INDEX_DIFY_DOCUMENT)
            return document_row(conn, pk), job

    def get_document_by_uuid(self, ds: DataSource, uuid: str, with_text: bool = False) -> Document | None:
        cols = rows.DOCUMENT_COLS + (", text" if with_text else "")
        with self.db.read() as conn:
            row = conn.one(f"SELECT {cols} FROM documents WHERE data_source_id = ? AND uuid = ?", (ds.id, uuid))
        if row is None:
            return None
        return rows.document(row, text=str(row[rows.DOCUMENT_TEXT_AT]) if with_text else None)

    def documents_titled(self, ds: DataSource, title: str) -> list[Document]:
        """The documents named ``title``, oldest first."""
        with self.db.read() as conn:
            found = conn.all(
                f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE data_source_id = ? AND title = ? ORDER BY id",
                (ds.id, title),
            )
        return [rows.document(r) for r in found]

    def list_dify_documents(
        self, ds: DataSource, keyword: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        with self.db.snapshot() as conn:
            where = "data_source_id = ?"
            params: list[object] = [ds.id]
            if keyword:
                where += f" AND {conn.dialect.position_fn}(lower(title), lower(?)) > 0"
                params.append(keyword)
            if status is not None:
                cond, cond_params = display_sql(conn.dialect, status)
                where += f" AND ({cond})"
                params += cond_params
            total = int(conn.scalar(f"SELECT count(*) FROM documents WHERE {where}", params))
            found = conn.all(
                f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE {where} "
                "ORDER BY created DESC, position DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return [rows.document(r) for r in found], total

    def documents_in_batch(self, ds: DataSource, batch: str) -> list[Document]:
        with self.db.read() as conn:
            found = conn.all(
                f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE data_source_id = ? AND batch = ? ORDER BY position",
                (ds.id, batch),
            )
        return [rows.document(r) for r in found]

    def document_section(self, ds: DataSource, document_id: str) -> tuple[int, str, str, dict[str, Any] | None] | None:
        """``(pk, hash, section_json, dify)`` of a stored document (what an index job reads)."""
        with self.db.read() as conn:
            row = conn.one(
                "SELECT id, hash, section, dify FROM documents WHERE data_source_id = ? AND document_id = ?",
                (ds.id, document_id),
            )
        if row is None:
            return None
        return int(row[0]), str(row[1]), str(row[2]), None if row[3] is None else dict(rows.js(row[3]))

    def set_index_progress(
        self, ds: DataSource, document_id: str, doc_hash: str, state: str, dify_updates: Mapping[str, Any]
    ) -> bool:
        """Move a document still at ``doc_hash`` (and not yet indexed) to pipeline ``state``, merging
        ``dify_updates`` into its processing record. False when the document changed or is gone."""
        with self.db.write() as conn:
            row = conn.one(
                "SELECT id, dify FROM documents WHERE data_source_id = ? AND document_id = ? AND hash = ? "
                f"AND index_state NOT IN ('indexed', 'failed'){conn.dialect.for_update}",
                (ds.id, document_id, doc_hash),
            )
            if row is None:
                return False
            pk = int(row[0])
            record = _merged(row[1], dify_updates)
            conn.execute("UPDATE documents SET index_state = ?, dify = ? WHERE id = ?", (state, record, pk))
            return True

    def index_dify_document(
        self,
        ds: DataSource,
        job: Job,
        segments: Sequence[SegmentWrite],
        unit_vectors: Vectors,
        unit_tokens: Sequence[int],
        dify_updates: Mapping[str, Any],
        now_ms: int,
        text: str | None = None,
    ) -> Document | None:
        """The end of a Dify index job, in one transaction: if the document still has the job's hash, replace its
        segments (and child chunks), index their units as its chunks (one per segment, or one per child chunk when
        a segment has children; ``unit_vectors``/``unit_tokens`` in that order) if it is searchable, merge
        ``dify_updates`` and mark it indexed (with ``text``, the text parsed from its file, as its content); mark the
        job done either way. None when the job was obsolete."""
        vecs = np.ascontiguousarray(unit_vectors, dtype=np.float32)
        with self.index.change(ds) as change:
            conn = change.conn
            finish_job(conn, job.id, None, JobState.DONE, None, now_ms)  # the job's row first, then the document's
            old = index_target(conn, ds.id, job, "id, hash, index_state, enabled, archived, dify")
            if old is None:
                return None
            pk = int(old[0])
            conn.execute("DELETE FROM segments WHERE document_pk = ?", (pk,))
            chunks: list[ChunkWrite] = []
            for position, seg in enumerate(segments, start=1):
                seg_pk, child_pks = insert_segment(conn, ds.id, pk, position, seg, now_ms)
                units: list[tuple[str, int | None]] = [
                    (c.content, child_pk) for c, child_pk in zip(seg.children, child_pks, strict=True)
                ]
                for content, child_pk in units or [(seg.content, None)]:
                    chunks.append(ChunkWrite(len(chunks), content, "", unit_tokens[len(chunks)], seg_pk, child_pk))
            if len(chunks) != len(vecs):
                raise InvalidRequest(f"{len(chunks)} index units but {len(vecs)} vectors")
            change.remove_document(pk)
            if rules.searchable(bool(old[3]), bool(old[4])):
                chunk_writes = _hashed(chunks)
                change.add(pk, chunk_writes, vecs)
            else:
                chunk_writes = []
            conn.execute(
                "UPDATE documents SET chunk_count = ?, token_count = ?, index_state = 'indexed', index_error = NULL, "
                "dify = ? WHERE id = ?",
                (len(chunk_writes), sum(unit_tokens), _merged(old[5], dify_updates), pk),
            )
            if text is not None:  # the text parsed from the document's file
                section = json.dumps({"prefix": None, "content": text, "sections": []}, ensure_ascii=False)
                conn.execute(
                    "UPDATE documents SET text = ?, section = ?, text_size = ? WHERE id = ?",
                    (text, section, len(text), pk),
                )
            return document_row(conn, pk)

    def replace_document_chunks(
        self, ds: DataSource, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors
    ) -> None:
        """Replace a document's chunks (rows and both indexes) without touching its content: after segment edits,
        or to take a disabled or archived document out of the indexes (no chunks)."""
        with self.index.change(ds) as change:
            conn = change.conn
            if conn.one(f"SELECT id FROM documents WHERE id = ?{conn.dialect.for_update}", (document_pk,)) is None:
                return
            change.remove_document(document_pk)
            change.add(document_pk, chunks, vectors)
            conn.execute(
                "UPDATE documents SET chunk_count = ?, updated = ? WHERE id = ?",
                (len(chunks), rows.now_ms(), document_pk),
            )

    def set_document_flags(
        self, ds: DataSource, document_pk: int, *, enabled: bool | None = None, archived: bool | None = None
    ) -> None:
        del ds
        now = rows.now_ms()
        sets: list[str] = ["updated = ?"]
        params: list[object] = [now]
        if enabled is not None:
            sets += ["enabled = ?", "disabled_at = ?"]
            params += [bool(enabled), None if enabled else now]
        if archived is not None:
            sets.append("archived = ?")
            params.append(bool(archived))
        with self.db.write() as conn:
            conn.execute(f"UPDATE documents SET {', '.join(sets)} WHERE id = ?", [*params, document_pk])

    def patch_dify_record(self, document_pk: int, updates: Mapping[str, Any]) -> None:
        """Merge ``updates`` into the document's processing record (a document without one is left alone)."""
        with self.db.write() as conn:
            row = conn.one(
                f"SELECT dify FROM documents WHERE id = ? AND dify IS NOT NULL{conn.dialect.for_update}", (document_pk,)
            )
            if row is not None:
                record = _merged(row[0], updates)
                conn.execute("UPDATE documents SET dify = ? WHERE id = ?", (record, document_pk))

    def set_doc_metadata(self, document_pk: int, values: Mapping[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE documents SET doc_metadata = ? WHERE id = ?", (json.dumps(dict(values)), document_pk))
