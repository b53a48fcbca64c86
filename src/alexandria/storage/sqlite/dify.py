"""Dify's knowledge model in the embedded store: datasets' settings, Dify documents and their pipeline states,
segments and child chunks (whose enabled texts are the document's chunks), metadata fields, tags and files."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alexandria.domain.dify import (
    ChildChunk,
    ChildWrite,
    DatasetCounts,
    DatasetTag,
    MetadataField,
    Segment,
    SegmentWrite,
    UploadedFile,
)
from alexandria.domain.jobs import IndexState, Job, JobState
from alexandria.domain.models import DataSource, Document
from alexandria.errors import AlreadyExists, InvalidRequest, StorageError
from alexandria.ingest.base import Vectors
from alexandria.ingest.hashing import chunk_hash
from alexandria.storage import rows
from alexandria.storage.base import ChunkWrite, DocumentWrite
from alexandria.storage.sqlite.chunks import drop_files_of, insert_chunks, write_document_row
from alexandria.storage.sqlite.db import SqliteEngine, quote_ident
from alexandria.storage.sqlite.jobs import queue_index_job
from alexandria.storage.sqlite.vectors import VectorIndexes

SEGMENT_COLS = (
    "id, uuid, data_source_id, document_pk, position, content, answer, keywords, hash, index_node_id, word_count, "
    "tokens, enabled, status, error, hit_count, created_at, updated_at, disabled_at, indexing_at, completed_at, "
    "stopped_at"
)
CHILD_COLS = "id, uuid, segment_pk, document_pk, position, content, word_count, type, created_at, updated_at"

# Dify's display_status, as SQL over the documents alias ``d`` (models/dataset.py Document.display_status).
DISPLAY_STATUS_SQL = {
    "queuing": "d.index_state = 'pending'",
    "indexing": "d.index_state IN ('parsing', 'splitting', 'indexing')",
    "paused": "0",
    "error": "d.index_state = 'failed'",
    "available": "d.index_state = 'indexed' AND d.archived = 0 AND d.enabled = 1",
    "disabled": "d.index_state = 'indexed' AND d.archived = 0 AND d.enabled = 0",
    "archived": "d.index_state = 'indexed' AND d.archived = 1",
}


def _opt_int(v: object) -> int | None:
    return None if v is None else int(str(v))


def segment_row(r: Sequence[object], children: tuple[ChildChunk, ...] = ()) -> Segment:
    return Segment(
        pk=int(str(r[0])),
        uuid=str(r[1]),
        data_source_id=int(str(r[2])),
        document_pk=int(str(r[3])),
        position=int(str(r[4])),
        content=str(r[5]),
        answer=None if r[6] is None else str(r[6]),
        keywords=tuple(json.loads(str(r[7]))),
        hash=str(r[8]),
        index_node_id=str(r[9]),
        word_count=int(str(r[10])),
        tokens=int(str(r[11])),
        enabled=bool(r[12]),
        status=str(r[13]),
        error=None if r[14] is None else str(r[14]),
        hit_count=int(str(r[15])),
        created_at=int(str(r[16])),
        updated_at=int(str(r[17])),
        disabled_at=_opt_int(r[18]),
        indexing_at=_opt_int(r[19]),
        completed_at=_opt_int(r[20]),
        stopped_at=_opt_int(r[21]),
        children=children,
    )


def child_row(r: Sequence[object]) -> ChildChunk:
    return ChildChunk(
        pk=int(str(r[0])),
        uuid=str(r[1]),
        segment_pk=int(str(r[2])),
        document_pk=int(str(r[3])),
        position=int(str(r[4])),
        content=str(r[5]),
        word_count=int(str(r[6])),
        type=str(r[7]),
        created_at=int(str(r[8])),
        updated_at=int(str(r[9])),
    )


def _insert_children(
    conn: sqlite3.Connection, seg_pk: int, doc_pk: int, children: Sequence[ChildWrite], now: int
) -> None:
    conn.executemany(
        "INSERT INTO child_chunks (uuid, segment_pk, document_pk, position, content, word_count, type, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (rows.new_uuid(), seg_pk, doc_pk, i + 1, c.content, len(c.content), c.type, now, now)
            for i, c in enumerate(children)
        ],
    )


def _insert_segment(
    conn: sqlite3.Connection, ds_id: int, doc_pk: int, position: int, seg: SegmentWrite, status: str, now: int
) -> int:
    node_id = rows.new_uuid()
    cur = conn.execute(
        "INSERT INTO segments (uuid, data_source_id, document_pk, position, content, answer, keywords, hash, "
        "index_node_id, word_count, tokens, enabled, status, created_at, updated_at, indexing_at, completed_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
        (
            rows.new_uuid(),
            ds_id,
            doc_pk,
            position,
            seg.content,
            seg.answer,
            json.dumps(list(seg.keywords)),
            seg.hash,
            node_id,
            seg.word_count,
            seg.tokens,
            status,
            now,
            now,
            now,
            now if status == "completed" else None,
        ),
    )
    pk = int(cur.lastrowid or 0)
    _insert_children(conn, pk, doc_pk, seg.children, now)
    return pk


class SqliteDify:
    """Dify half of :class:`SqliteStore`."""

    engine: SqliteEngine
    vectors: VectorIndexes

    @staticmethod
    def _vector_version(conn: sqlite3.Connection, data_source_id: int) -> int:
        raise NotImplementedError

    @staticmethod
    def _bump_version(conn: sqlite3.Connection, data_source_id: int) -> int:
        raise NotImplementedError

    @staticmethod
    def _delete_chunks(conn: sqlite3.Connection, fts: str, document_pk: int) -> list[int]:
        raise NotImplementedError

    def _finish(
        self, conn: sqlite3.Connection, job_id: int, owner: str | None, state: JobState, error: str | None, now: int
    ) -> bool:
        raise NotImplementedError

    # --- datasets ------------------------------------------------------------------------------------------------
    def get_data_source_by_uuid(self, workspace_id: int, uuid: str) -> DataSource | None:
        row = (
            self.engine.reader()
            .execute(
                f"SELECT {rows.DATA_SOURCE_COLS} FROM data_sources WHERE workspace_id = ? AND uuid = ?",
                (workspace_id, uuid),
            )
            .fetchone()
        )
        return rows.data_source(row) if row else None

    def update_data_source(
        self, ds: DataSource, name: str, description: str | None, dify: Mapping[str, Any]
    ) -> DataSource:
        try:
            with self.engine.write() as conn:
                conn.execute(
                    "UPDATE data_sources SET name = ?, description = ?, dify = ?, updated_at = ? WHERE id = ?",
                    (name, description, json.dumps(dict(dify)), rows.now_ms(), ds.id),
                )
                row = conn.execute(
                    f"SELECT {rows.DATA_SOURCE_COLS} FROM data_sources WHERE id = ?", (ds.id,)
                ).fetchone()
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(
                f"a data source named {name!r} already exists in this workspace", code="data_source_name_taken"
            ) from exc
        if row is None:
            raise StorageError(f"data source {ds.id} vanished")
        return rows.data_source(row)

    def delete_data_source(self, ds: DataSource) -> bool:
        index = self.vectors.get(ds.id, ds.dim)
        with index.lock:
            with self.engine.write() as conn:
                drop_files_of(conn, "data_source_id = ?", (ds.id,))
                cur = conn.execute("DELETE FROM data_sources WHERE id = ?", (ds.id,))
                if cur.rowcount == 0:
                    return False
                conn.execute(f"DROP TABLE IF EXISTS {quote_ident(f'fts_{int(ds.id)}')}")
                conn.execute("DELETE FROM jobs WHERE data_source_id = ?", (ds.id,))
            self.vectors.drop(ds.id)
        return True

    def data_source_counts(self, data_source_ids: Sequence[int]) -> dict[int, DatasetCounts]:
        cur = self.engine.reader().execute(
            "SELECT data_source_id, count(*), "
            "coalesce(sum(coalesce(json_extract(dify, '$.word_count'), text_size)), 0), "
            f"sum(CASE WHEN {DISPLAY_STATUS_SQL['available'].replace('d.', '')} THEN 1 ELSE 0 END) "
            "FROM documents WHERE data_source_id IN (SELECT value FROM json_each(?)) GROUP BY data_source_id",
            (json.dumps(list(data_source_ids)),),
        )
        out = {i: DatasetCounts(0, 0, 0) for i in data_source_ids}
        for r in cur:
            out[int(r[0])] = DatasetCounts(int(r[1]), int(r[2]), int(r[3] or 0))
        return out

    # --- documents -----------------------------------------------------------------------------------------------
    def write_dify_document(
        self,
        ds: DataSource,
        doc: DocumentWrite,
        dify: Mapping[str, Any],
        batch: str,
        now_ms: int,
        keep_batch: bool = False,
    ) -> tuple[Document, Job]:
        """Store a Dify document's content as ``pending`` (Dify's "waiting") and queue its index job, in one
        transaction. An existing document of that id is updated in place: its segments become ``re_segment`` until
        the job replaces them; ``keep_batch`` keeps its batch (Dify's update endpoints answer the old batch)."""
        with self.engine.write() as conn:
            old = conn.execute(
                "SELECT batch FROM documents WHERE data_source_id = ? AND document_id = ?", (ds.id, doc.document_id)
            ).fetchone()
            kept = str(old[0]) if keep_batch and old is not None and old[0] else batch
            if old is not None and dify.get("stored_file") is not None:  # a replaced file goes with its document
                file_id = (dify.get("file") or {}).get("id")
                drop_files_of(conn, "data_source_id = ? AND document_id = ? AND json_extract(dify, '$.file.id') != ?",
                              (ds.id, doc.document_id, file_id))  # fmt: skip
            columns = {"dify": json.dumps(dict(dify)), "batch": kept}
            pk, existed = write_document_row(conn, ds.id, doc, now_ms, "pending", columns, new_uuid=doc.document_id)
            if existed:
                conn.execute(
                    "UPDATE segments SET status = 're_segment', updated_at = ? WHERE document_pk = ?", (now_ms, pk)
                )
            job = queue_index_job(conn, ds, doc, now_ms)
            row = conn.execute(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = ?", (pk,)).fetchone()
        return rows.document(row), job

    def get_document_by_uuid(self, ds: DataSource, uuid: str, with_text: bool = False) -> Document | None:
        cols = rows.DOCUMENT_COLS + (", text" if with_text else "")
        row = (
            self.engine.reader()
            .execute(f"SELECT {cols} FROM documents WHERE data_source_id = ? AND uuid = ?", (ds.id, uuid))
            .fetchone()
        )
        if row is None:
            return None
        return rows.document(row, text=str(row[rows.DOCUMENT_TEXT_AT]) if with_text else None)

    def find_document_by_title(self, ds: DataSource, title: str) -> Document | None:
        """The enabled Dify document named ``title`` (Dify reuses it for a same-name create)."""
        row = (
            self.engine.reader()
            .execute(
                f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE data_source_id = ? AND title = ? AND enabled = 1 "
                "AND dify IS NOT NULL ORDER BY id LIMIT 1",
                (ds.id, title),
            )
            .fetchone()
        )
        return rows.document(row) if row else None

    def list_dify_documents(
        self, ds: DataSource, keyword: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        where = "d.data_source_id = ?"
        params: list[object] = [ds.id]
        if keyword:
            where += " AND instr(lower(d.title), lower(?)) > 0"
            params.append(keyword)
        if status is not None:
            where += f" AND ({DISPLAY_STATUS_SQL[status]})"
        with self.engine.snapshot() as conn:
            total = int(conn.execute(f"SELECT count(*) FROM documents d WHERE {where}", params).fetchone()[0])
            cur = conn.execute(
                f"SELECT {rows.DOCUMENT_COLS.replace(', ', ', d.').replace('id, ', 'd.id, ', 1)} FROM documents d "
                f"WHERE {where} ORDER BY d.created DESC, d.position DESC LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
            docs = [rows.document(r) for r in cur]
        return docs, total

    def documents_in_batch(self, ds: DataSource, batch: str) -> list[Document]:
        cur = self.engine.reader().execute(
            f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE data_source_id = ? AND batch = ? ORDER BY position",
            (ds.id, batch),
        )
        return [rows.document(r) for r in cur]

    def document_section(self, ds: DataSource, document_id: str) -> tuple[int, str, str, dict[str, Any] | None] | None:
        """``(pk, hash, section_json, dify)`` of a stored document (what an index job reads)."""
        row = (
            self.engine.reader()
            .execute(
                "SELECT id, hash, section, dify FROM documents WHERE data_source_id = ? AND document_id = ?",
                (ds.id, document_id),
            )
            .fetchone()
        )
        if row is None:
            return None
        return int(row[0]), str(row[1]), str(row[2]), None if row[3] is None else json.loads(str(row[3]))

    def set_index_progress(
        self, ds: DataSource, document_id: str, doc_hash: str, state: str, dify_updates: Mapping[str, Any]
    ) -> bool:
        """Move a document still at ``doc_hash`` (and not yet indexed) to pipeline ``state``, merging
        ``dify_updates`` into its processing record. False when the document changed or is gone."""
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE documents SET index_state = ?, dify = json_patch(coalesce(dify, '{}'), ?) "
                "WHERE data_source_id = ? AND document_id = ? AND hash = ? "
                "AND index_state NOT IN ('indexed', 'failed')",
                (state, json.dumps(dict(dify_updates)), ds.id, document_id, doc_hash),
            )
            return cur.rowcount > 0

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
        a segment has children; ``unit_vectors``/``unit_tokens`` in that order), merge ``dify_updates`` and mark
        it indexed (with ``text``, the text parsed from its file, as its content); mark the job done either way.
        None when the job was obsolete."""
        document_id, doc_hash = job.payload_str("document_id"), job.payload_str("hash")
        index = self.vectors.get(ds.id, ds.dim)
        fts = quote_ident(f"fts_{int(ds.id)}")
        vecs = np.ascontiguousarray(unit_vectors, dtype=np.float32)
        with index.lock:
            with self.engine.write() as conn:
                self._finish(conn, job.id, None, JobState.DONE, None, now_ms)
                old = conn.execute(
                    "SELECT id, hash, index_state, enabled, archived FROM documents "
                    "WHERE data_source_id = ? AND document_id = ?",
                    (ds.id, document_id),
                ).fetchone()
                if old is None or str(old[1]) != doc_hash or str(old[2]) == IndexState.INDEXED:
                    return None
                pk = int(old[0])
                searchable = bool(old[3]) and not bool(old[4])
                conn.execute("DELETE FROM segments WHERE document_pk = ?", (pk,))
                chunks: list[ChunkWrite] = []
                unit = 0
                for position, seg in enumerate(segments, start=1):
                    seg_pk = _insert_segment(conn, ds.id, pk, position, seg, "completed", now_ms)
                    if seg.children:
                        child_pks = [
                            int(r[0])
                            for r in conn.execute(
                                "SELECT id FROM child_chunks WHERE segment_pk = ? ORDER BY position", (seg_pk,)
                            )
                        ]
                        for child, child_pk in zip(seg.children, child_pks, strict=True):
                            chunks.append(ChunkWrite(unit, child.content, "", unit_tokens[unit], seg_pk, child_pk))
                            unit += 1
                    else:
                        chunks.append(ChunkWrite(unit, seg.content, "", unit_tokens[unit], seg_pk, None))
                        unit += 1
                if unit != len(vecs):
                    raise InvalidRequest(f"{unit} index units but {len(vecs)} vectors")
                prev_version = self._vector_version(conn, ds.id)
                removed = self._delete_chunks(conn, fts, pk)
                chunk_writes = _hashed(chunks) if searchable else []
                added = insert_chunks(conn, fts, ds.id, pk, chunk_writes, vecs if searchable else vecs[:0])
                conn.execute(
                    "UPDATE documents SET chunk_count = ?, token_count = ?, index_state = 'indexed', "
                    "index_error = NULL, dify = json_patch(coalesce(dify, '{}'), ?) WHERE id = ?",
                    (len(chunk_writes), sum(unit_tokens), json.dumps(dict(dify_updates)), pk),
                )
                if text is not None:  # the text parsed from the document's file
                    section = json.dumps({"prefix": None, "content": text, "sections": []}, ensure_ascii=False)
                    conn.execute(
                        "UPDATE documents SET text = ?, section = ?, text_size = ? WHERE id = ?",
                        (text, section, len(text), pk),
                    )
                new_version = self._bump_version(conn, ds.id)
                row = conn.execute(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = ?", (pk,)).fetchone()
            if index.version == prev_version:
                index.remove(np.array(removed, dtype=np.int64))
                if searchable:
                    index.add(np.array(added, dtype=np.int64), vecs)
                index.version = new_version
        return rows.document(row)

    def replace_document_chunks(
        self, ds: DataSource, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors
    ) -> None:
        """Replace a document's chunks (rows, FTS, HNSW) without touching its content: after segment edits, or to
        take a disabled or archived document out of the indexes (no chunks)."""
        index = self.vectors.get(ds.id, ds.dim)
        fts = quote_ident(f"fts_{int(ds.id)}")
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        with index.lock:
            with self.engine.write() as conn:
                prev_version = self._vector_version(conn, ds.id)
                removed = self._delete_chunks(conn, fts, document_pk)
                added = insert_chunks(conn, fts, ds.id, document_pk, chunks, vecs)
                conn.execute(
                    "UPDATE documents SET chunk_count = ?, updated = ? WHERE id = ?",
                    (len(chunks), rows.now_ms(), document_pk),
                )
                new_version = self._bump_version(conn, ds.id)
            if index.version == prev_version:
                index.remove(np.array(removed, dtype=np.int64))
                index.add(np.array(added, dtype=np.int64), vecs)
                index.version = new_version

    def set_document_flags(
        self, ds: DataSource, document_pk: int, *, enabled: bool | None = None, archived: bool | None = None
    ) -> None:
        sets: list[str] = ["updated = ?"]
        now = rows.now_ms()
        params: list[object] = [now]
        if enabled is not None:
            sets += ["enabled = ?", "disabled_at = ?"]
            params += [int(enabled), None if enabled else now]
        if archived is not None:
            sets.append("archived = ?")
            params.append(int(archived))
        with self.engine.write() as conn:
            conn.execute(f"UPDATE documents SET {', '.join(sets)} WHERE id = ?", [*params, document_pk])

    def patch_dify_record(self, document_pk: int, updates: Mapping[str, Any]) -> None:
        with self.engine.write() as conn:
            conn.execute(
                "UPDATE documents SET dify = json_patch(coalesce(dify, '{}'), ?) WHERE id = ? AND dify IS NOT NULL",
                (json.dumps(dict(updates)), document_pk),
            )

    def set_doc_metadata(self, document_pk: int, values: Mapping[str, Any]) -> None:
        with self.engine.write() as conn:
            conn.execute("UPDATE documents SET doc_metadata = ? WHERE id = ?", (json.dumps(dict(values)), document_pk))

    # --- segments and child chunks -------------------------------------------------------------------------------
    def list_segments(
        self, document_pk: int, statuses: Sequence[str], keyword: str | None, limit: int, offset: int
    ) -> tuple[list[Segment], int]:
        where = "document_pk = ?"
        params: list[object] = [document_pk]
        if statuses:
            where += " AND status IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(list(statuses)))
        if keyword:
            where += " AND instr(lower(content), lower(?)) > 0"
            params.append(keyword)
        with self.engine.snapshot() as conn:
            total = int(conn.execute(f"SELECT count(*) FROM segments WHERE {where}", params).fetchone()[0])
            found = conn.execute(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE {where} ORDER BY position, id LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            return self._with_children(conn, found), total

    def document_segments(self, document_pk: int) -> list[Segment]:
        with self.engine.snapshot() as conn:
            found = conn.execute(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE document_pk = ? ORDER BY position, id", (document_pk,)
            ).fetchall()
            return self._with_children(conn, found)

    def segments_by_pk(self, segment_pks: Sequence[int]) -> dict[int, Segment]:
        with self.engine.snapshot() as conn:
            found = conn.execute(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(segment_pks)),),
            ).fetchall()
            return {s.pk: s for s in self._with_children(conn, found)}

    def get_segment(self, document_pk: int, uuid: str) -> Segment | None:
        with self.engine.snapshot() as conn:
            found = conn.execute(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE document_pk = ? AND uuid = ?", (document_pk, uuid)
            ).fetchall()
            segs = self._with_children(conn, found)
        return segs[0] if segs else None

    @staticmethod
    def _with_children(conn: sqlite3.Connection, found: Sequence[Sequence[object]]) -> list[Segment]:
        pks = [int(str(r[0])) for r in found]
        kids: dict[int, list[ChildChunk]] = {pk: [] for pk in pks}
        if pks:
            for r in conn.execute(
                f"SELECT {CHILD_COLS} FROM child_chunks WHERE segment_pk IN (SELECT value FROM json_each(?)) "
                "ORDER BY segment_pk, position, id",
                (json.dumps(pks),),
            ):
                kids[int(r[2])].append(child_row(r))
        return [segment_row(r, tuple(kids[int(str(r[0]))])) for r in found]

    def add_segments(self, ds: DataSource, document_pk: int, segments: Sequence[SegmentWrite]) -> list[int]:
        now = rows.now_ms()
        with self.engine.write() as conn:
            start = int(
                conn.execute(
                    "SELECT coalesce(max(position), 0) FROM segments WHERE document_pk = ?", (document_pk,)
                ).fetchone()[0]
            )
            return [
                _insert_segment(conn, ds.id, document_pk, start + i, seg, "completed", now)
                for i, seg in enumerate(segments, start=1)
            ]

    def update_segment(
        self,
        segment_pk: int,
        *,
        content: SegmentWrite | None = None,
        enabled: bool | None = None,
        children: Sequence[ChildWrite] | None = None,
    ) -> None:
        now = rows.now_ms()
        with self.engine.write() as conn:
            if content is not None:
                conn.execute(
                    "UPDATE segments SET content = ?, answer = ?, keywords = ?, hash = ?, word_count = ?, tokens = ?, "
                    "status = 'completed', updated_at = ?, completed_at = ? WHERE id = ?",
                    (
                        content.content,
                        content.answer,
                        json.dumps(list(content.keywords)),
                        content.hash,
                        content.word_count,
                        content.tokens,
                        now,
                        now,
                        segment_pk,
                    ),
                )
            if enabled is not None:
                conn.execute(
                    "UPDATE segments SET enabled = ?, disabled_at = ?, updated_at = ? WHERE id = ?",
                    (int(enabled), None if enabled else now, now, segment_pk),
                )
            if children is not None:
                doc_pk = int(conn.execute("SELECT document_pk FROM segments WHERE id = ?", (segment_pk,)).fetchone()[0])
                conn.execute("DELETE FROM child_chunks WHERE segment_pk = ?", (segment_pk,))
                _insert_children(conn, segment_pk, doc_pk, children, now)

    def delete_segment(self, segment_pk: int) -> bool:
        with self.engine.write() as conn:
            return conn.execute("DELETE FROM segments WHERE id = ?", (segment_pk,)).rowcount > 0

    def add_child_chunk(self, segment: Segment, content: str) -> ChildChunk:
        now = rows.now_ms()
        with self.engine.write() as conn:
            position = int(
                conn.execute(
                    "SELECT coalesce(max(position), 0) + 1 FROM child_chunks WHERE segment_pk = ?", (segment.pk,)
                ).fetchone()[0]
            )
            row = conn.execute(
                "INSERT INTO child_chunks (uuid, segment_pk, document_pk, position, content, word_count, type, "
                f"created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'customized', ?, ?) RETURNING {CHILD_COLS}",
                (rows.new_uuid(), segment.pk, segment.document_pk, position, content, len(content), now, now),
            ).fetchone()
        return child_row(row)

    def update_child_chunk(self, child_pk: int, content: str) -> ChildChunk:
        with self.engine.write() as conn:
            row = conn.execute(
                "UPDATE child_chunks SET content = ?, word_count = ?, type = 'customized', updated_at = ? "
                f"WHERE id = ? RETURNING {CHILD_COLS}",
                (content, len(content), rows.now_ms(), child_pk),
            ).fetchone()
        if row is None:
            raise StorageError(f"child chunk {child_pk} vanished")
        return child_row(row)

    def delete_child_chunk(self, child_pk: int) -> bool:
        with self.engine.write() as conn:
            return conn.execute("DELETE FROM child_chunks WHERE id = ?", (child_pk,)).rowcount > 0

    def bump_hit_counts(self, segment_pks: Sequence[int]) -> None:
        if not segment_pks:
            return
        with self.engine.write() as conn:
            conn.execute(
                "UPDATE segments SET hit_count = hit_count + 1 WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(segment_pks)),),
            )

    # --- metadata fields -----------------------------------------------------------------------------------------
    def create_metadata_field(self, ds: DataSource, name: str, type_: str) -> MetadataField:
        try:
            with self.engine.write() as conn:
                row = conn.execute(
                    "INSERT INTO metadata_fields (uuid, data_source_id, name, type, created_at) VALUES (?, ?, ?, ?, ?) "
                    "RETURNING id, uuid, data_source_id, name, type, created_at",
                    (rows.new_uuid(), ds.id, name, type_, rows.now_ms()),
                ).fetchone()
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists("Metadata name already exists.", code="metadata_name_taken") from exc
        return MetadataField(int(row[0]), str(row[1]), int(row[2]), str(row[3]), str(row[4]), int(row[5]))

    def list_metadata_fields(self, ds: DataSource) -> list[tuple[MetadataField, int]]:
        """Each field with the number of documents holding a value for it."""
        cur = self.engine.reader().execute(
            "SELECT f.id, f.uuid, f.data_source_id, f.name, f.type, f.created_at, "
            "(SELECT count(*) FROM documents d WHERE d.data_source_id = f.data_source_id "
            "AND EXISTS (SELECT 1 FROM json_each(d.doc_metadata) j WHERE j.key = f.name)) "
            "FROM metadata_fields f WHERE f.data_source_id = ? ORDER BY f.id",
            (ds.id,),
        )
        return [
            (MetadataField(int(r[0]), str(r[1]), int(r[2]), str(r[3]), str(r[4]), int(r[5])), int(r[6])) for r in cur
        ]

    def rename_metadata_field(self, ds: DataSource, field: MetadataField, name: str) -> MetadataField:
        """Rename a field and the key of its values in every document of the data source."""
        try:
            with self.engine.write() as conn:
                conn.execute("UPDATE metadata_fields SET name = ? WHERE id = ?", (name, field.pk))
                for pk, meta in conn.execute(
                    "SELECT id, doc_metadata FROM documents WHERE data_source_id = ?", (ds.id,)
                ).fetchall():
                    values = json.loads(str(meta))
                    if field.name in values:
                        values[name] = values.pop(field.name)
                        conn.execute("UPDATE documents SET doc_metadata = ? WHERE id = ?", (json.dumps(values), pk))
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists("Metadata name already exists.", code="metadata_name_taken") from exc
        return MetadataField(field.pk, field.uuid, field.data_source_id, name, field.type, field.created_at)

    def delete_metadata_field(self, ds: DataSource, field: MetadataField) -> None:
        with self.engine.write() as conn:
            conn.execute("DELETE FROM metadata_fields WHERE id = ?", (field.pk,))
            for pk, meta in conn.execute(
                "SELECT id, doc_metadata FROM documents WHERE data_source_id = ?", (ds.id,)
            ).fetchall():
                values = json.loads(str(meta))
                if values.pop(field.name, None) is not None or field.name in json.loads(str(meta)):
                    conn.execute("UPDATE documents SET doc_metadata = ? WHERE id = ?", (json.dumps(values), pk))

    # --- tags ----------------------------------------------------------------------------------------------------
    _TAG_SELECT = (
        "SELECT t.id, t.uuid, t.workspace_id, t.name, "
        "(SELECT count(*) FROM dataset_tag_bindings b WHERE b.tag_pk = t.id), t.created_at FROM dataset_tags t "
    )

    @staticmethod
    def _tag(r: Sequence[object]) -> DatasetTag:
        return DatasetTag(int(str(r[0])), str(r[1]), int(str(r[2])), str(r[3]), int(str(r[4])), int(str(r[5])))

    def create_tag(self, workspace_id: int, name: str) -> DatasetTag:
        try:
            with self.engine.write() as conn:
                cur = conn.execute(
                    "INSERT INTO dataset_tags (uuid, workspace_id, name, created_at) VALUES (?, ?, ?, ?)",
                    (rows.new_uuid(), workspace_id, name, rows.now_ms()),
                )
                row = conn.execute(self._TAG_SELECT + "WHERE t.id = ?", (cur.lastrowid,)).fetchone()
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists("Tag name already exists", code="tag_name_taken") from exc
        return self._tag(row)

    def list_tags(self, workspace_id: int) -> list[DatasetTag]:
        cur = self.engine.reader().execute(self._TAG_SELECT + "WHERE t.workspace_id = ? ORDER BY t.id", (workspace_id,))
        return [self._tag(r) for r in cur]

    def get_tag(self, workspace_id: int, uuid: str) -> DatasetTag | None:
        row = (
            self.engine.reader()
            .execute(self._TAG_SELECT + "WHERE t.workspace_id = ? AND t.uuid = ?", (workspace_id, uuid))
            .fetchone()
        )
        return self._tag(row) if row else None

    def rename_tag(self, tag: DatasetTag, name: str) -> DatasetTag:
        try:
            with self.engine.write() as conn:
                conn.execute("UPDATE dataset_tags SET name = ? WHERE id = ?", (name, tag.pk))
                row = conn.execute(self._TAG_SELECT + "WHERE t.id = ?", (tag.pk,)).fetchone()
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists("Tag name already exists", code="tag_name_taken") from exc
        return self._tag(row)

    def delete_tag(self, tag: DatasetTag) -> None:
        with self.engine.write() as conn:
            conn.execute("DELETE FROM dataset_tags WHERE id = ?", (tag.pk,))

    def bind_tags(self, data_source_id: int, tag_pks: Sequence[int]) -> None:
        with self.engine.write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO dataset_tag_bindings (tag_pk, data_source_id, created_at) VALUES (?, ?, ?)",
                [(pk, data_source_id, rows.now_ms()) for pk in tag_pks],
            )

    def unbind_tags(self, data_source_id: int, tag_pks: Sequence[int]) -> None:
        with self.engine.write() as conn:
            conn.executemany(
                "DELETE FROM dataset_tag_bindings WHERE tag_pk = ? AND data_source_id = ?",
                [(pk, data_source_id) for pk in tag_pks],
            )

    def tags_of_data_sources(self, data_source_ids: Sequence[int]) -> dict[int, list[DatasetTag]]:
        cur = self.engine.reader().execute(
            self._TAG_SELECT.replace("FROM dataset_tags t ", ", b2.data_source_id FROM dataset_tags t ")
            + "JOIN dataset_tag_bindings b2 ON b2.tag_pk = t.id "
            "WHERE b2.data_source_id IN (SELECT value FROM json_each(?)) ORDER BY t.id",
            (json.dumps(list(data_source_ids)),),
        )
        out: dict[int, list[DatasetTag]] = {i: [] for i in data_source_ids}
        for r in cur:
            out[int(r[6])].append(self._tag(r))
        return out

    # --- files ---------------------------------------------------------------------------------------------------
    def save_file(self, workspace_id: int, name: str, extension: str, mime_type: str, data: bytes) -> UploadedFile:
        with self.engine.write() as conn:
            row = conn.execute(
                "INSERT INTO files (uuid, workspace_id, name, size, extension, mime_type, data, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id, uuid, workspace_id, name, size, extension, mime_type, "
                "created_at",
                (rows.new_uuid(), workspace_id, name, len(data), extension, mime_type, data, rows.now_ms()),
            ).fetchone()
        return UploadedFile(
            int(row[0]), str(row[1]), int(row[2]), str(row[3]), int(row[4]), str(row[5]), str(row[6]), int(row[7])
        )

    def chunk_segments(self, chunk_pks: Sequence[int]) -> dict[int, tuple[int | None, int | None]]:
        """The segment and child chunk each chunk indexes (None, None for Dust chunks)."""
        cur = self.engine.reader().execute(
            "SELECT id, segment_pk, child_pk FROM chunks WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(chunk_pks)),),
        )
        return {int(r[0]): (_opt_int(r[1]), _opt_int(r[2])) for r in cur}

    def instance_secret(self, name: str) -> str:
        """A random secret of this installation, made on first use (every process of it sees the same one)."""
        row = self.engine.reader().execute("SELECT value FROM instance_secrets WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return str(row[0])
        with self.engine.write() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO instance_secrets (name, value) VALUES (?, ?)", (name, secrets.token_hex(32))
            )
            return str(conn.execute("SELECT value FROM instance_secrets WHERE name = ?", (name,)).fetchone()[0])

    def get_file(self, workspace_id: int, uuid: str) -> tuple[UploadedFile, bytes] | None:
        row = (
            self.engine.reader()
            .execute(
                "SELECT id, uuid, workspace_id, name, size, extension, mime_type, created_at, data FROM files "
                "WHERE workspace_id = ? AND uuid = ?",
                (workspace_id, uuid),
            )
            .fetchone()
        )
        if row is None:
            return None
        f = UploadedFile(
            int(row[0]), str(row[1]), int(row[2]), str(row[3]), int(row[4]), str(row[5]), str(row[6]), int(row[7])
        )
        return f, bytes(row[8])

    def file_data(self, uuid: str) -> bytes | None:
        row = self.engine.reader().execute("SELECT data FROM files WHERE uuid = ?", (uuid,)).fetchone()
        return None if row is None else bytes(row[0])


def _hashed(chunks: Sequence[ChunkWrite]) -> list[ChunkWrite]:
    """Give each chunk its text hash (the key vectors are reused by)."""
    return [ChunkWrite(c.offset, c.text, chunk_hash(c.text), c.token_count, c.segment_pk, c.child_pk) for c in chunks]
