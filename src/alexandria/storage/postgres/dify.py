"""Dify's knowledge model on PostgreSQL (the port of ``storage.sqlite.dify``): datasets' settings, Dify documents and
their pipeline states, segments and child chunks (whose enabled texts are the document's chunks), metadata fields,
tags and files.

Processing records are merged as SQLite's ``json_patch`` merges them (RFC 7396: a null removes a key, objects merge
recursively), in Python under the row's lock; writes that replace a document's chunks lock its row first, so they
serialise as the embedded store's single writer does."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

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
from alexandria.domain.jobs import IndexState, Job
from alexandria.domain.models import DataSource, Document
from alexandria.errors import AlreadyExists, InvalidRequest, StorageError
from alexandria.ingest.base import Vectors
from alexandria.ingest.hashing import chunk_hash
from alexandria.storage import rows
from alexandria.storage.base import ChunkWrite, DocumentWrite
from alexandria.storage.chunk_index import checked_vectors as check_vectors
from alexandria.storage.common.queue_rows import LIVE
from alexandria.storage.postgres.chunk_index import delete_chunks, hnsw_index_name, insert_chunks
from alexandria.storage.postgres.core import drop_files_of, write_document_row
from alexandria.storage.postgres.db import PgEngine
from alexandria.storage.postgres.jobs import queue_index_job

log = logging.getLogger(__name__)

SEGMENT_COLS = (
    "id, uuid, data_source_id, document_pk, position, content, answer, keywords, hash, index_node_id, word_count, "
    "tokens, enabled, status, error, hit_count, created_at, updated_at, disabled_at, indexing_at, completed_at, "
    "stopped_at"
)
CHILD_COLS = "id, uuid, segment_pk, document_pk, position, content, word_count, type, created_at, updated_at"
FILE_COLS = "id, uuid, workspace_id, name, size, extension, mime_type, created_at"
FIELD_COLS = "id, uuid, data_source_id, name, type, created_at"
D_DOCUMENT_COLS = ", ".join("d." + c for c in rows.DOCUMENT_COLS.split(", "))  # DOCUMENT_COLS over the alias ``d``

# Dify's display_status, as SQL over the documents alias ``d`` (models/dataset.py Document.display_status).
DISPLAY_STATUS_SQL = {
    "queuing": "d.index_state = 'pending'",
    "indexing": "d.index_state IN ('parsing', 'splitting', 'indexing')",
    "paused": "FALSE",
    "error": "d.index_state = 'failed'",
    "available": "d.index_state = 'indexed' AND NOT d.archived AND d.enabled",
    "disabled": "d.index_state = 'indexed' AND NOT d.archived AND NOT d.enabled",
    "archived": "d.index_state = 'indexed' AND d.archived",
}


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` patched by ``patch`` (RFC 7396 JSON merge patch, what SQLite's ``json_patch`` computes)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _opt_int(v: object) -> int | None:
    return None if v is None else int(str(v))


def _one(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    if row is None:
        raise StorageError("a row expected from PostgreSQL is missing")
    return row


def segment_row(r: Sequence[object], children: tuple[ChildChunk, ...] = ()) -> Segment:
    return Segment(
        pk=int(str(r[0])),
        uuid=str(r[1]),
        data_source_id=int(str(r[2])),
        document_pk=int(str(r[3])),
        position=int(str(r[4])),
        content=str(r[5]),
        answer=None if r[6] is None else str(r[6]),
        keywords=tuple(rows.js(r[7], [])),
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


def _file(r: Sequence[object]) -> UploadedFile:
    return UploadedFile(
        int(str(r[0])), str(r[1]), int(str(r[2])), str(r[3]), int(str(r[4])), str(r[5]), str(r[6]), int(str(r[7]))
    )


def _field(r: Sequence[object]) -> MetadataField:
    return MetadataField(int(str(r[0])), str(r[1]), int(str(r[2])), str(r[3]), str(r[4]), int(str(r[5])))


def _insert_children(
    conn: psycopg.Connection, seg_pk: int, doc_pk: int, children: Sequence[ChildWrite], now: int
) -> None:
    if not children:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO child_chunks (uuid, segment_pk, document_pk, position, content, word_count, type, "
            "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (rows.new_uuid(), seg_pk, doc_pk, i + 1, c.content, len(c.content), c.type, now, now)
                for i, c in enumerate(children)
            ],
        )


def _insert_segment(
    conn: psycopg.Connection, ds_id: int, doc_pk: int, position: int, seg: SegmentWrite, status: str, now: int
) -> int:
    row = conn.execute(
        "INSERT INTO segments (uuid, data_source_id, document_pk, position, content, answer, keywords, hash, "
        "index_node_id, word_count, tokens, enabled, status, created_at, updated_at, indexing_at, completed_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, TRUE, %s, %s, %s, %s, %s) RETURNING id",
        (
            rows.new_uuid(),
            ds_id,
            doc_pk,
            position,
            seg.content,
            seg.answer,
            json.dumps(list(seg.keywords)),
            seg.hash,
            rows.new_uuid(),
            seg.word_count,
            seg.tokens,
            status,
            now,
            now,
            now,
            now if status == "completed" else None,
        ),
    ).fetchone()
    pk = int(_one(row)[0])
    _insert_children(conn, pk, doc_pk, seg.children, now)
    return pk


def _finish_index_job(conn: psycopg.Connection, job_id: int, now_ms: int) -> None:
    """Mark an index job done (if still live) inside the transaction that writes its result."""
    conn.execute(
        f"UPDATE jobs SET state = 'done', error = NULL, lease_owner = NULL, updated_at = %s WHERE id = %s AND {LIVE}",
        (now_ms, job_id),
    )


def _hashed(chunks: Sequence[ChunkWrite]) -> list[ChunkWrite]:
    """Give each chunk its text hash (the key vectors are reused by)."""
    return [ChunkWrite(c.offset, c.text, chunk_hash(c.text), c.token_count, c.segment_pk, c.child_pk) for c in chunks]


class PgDify:
    """Dify half of :class:`PostgresStore`."""

    engine: PgEngine

    # --- datasets ------------------------------------------------------------------------------------------------
    def get_data_source_by_uuid(self, workspace_id: int, uuid: str) -> DataSource | None:
        with self.engine.read() as conn:
            row = conn.execute(
                f"SELECT {rows.DATA_SOURCE_COLS} FROM data_sources WHERE workspace_id = %s AND uuid = %s",
                (workspace_id, uuid),
            ).fetchone()
        return rows.data_source(row) if row else None

    def update_data_source(
        self, ds: DataSource, name: str, description: str | None, dify: Mapping[str, Any]
    ) -> DataSource:
        try:
            with self.engine.write() as conn:
                row = conn.execute(
                    "UPDATE data_sources SET name = %s, description = %s, dify = %s, updated_at = %s WHERE id = %s "
                    f"RETURNING {rows.DATA_SOURCE_COLS}",
                    (name, description, json.dumps(dict(dify)), rows.now_ms(), ds.id),
                ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyExists(
                f"a data source named {name!r} already exists in this workspace", code="data_source_name_taken"
            ) from exc
        if row is None:
            raise StorageError(f"data source {ds.id} vanished")
        return rows.data_source(row)

    def delete_data_source(self, ds: DataSource) -> bool:
        with self.engine.write() as conn:
            drop_files_of(conn, "data_source_id = %s", (ds.id,))
            cur = conn.execute("DELETE FROM data_sources WHERE id = %s", (ds.id,))
            if cur.rowcount == 0:
                return False
            conn.execute("DELETE FROM jobs WHERE data_source_id = %s", (ds.id,))
        # Its partial HNSW index, once nothing can plan with it: concurrently (outside a transaction), so that
        # searches and writes of the other data sources never wait on the chunks table's exclusive lock. Ids are
        # never reused, so an index left by a failure here only costs its space.
        try:
            with self.engine.read() as conn:
                conn.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(hnsw_index_name(ds.id)))
                )
        except psycopg.Error as exc:
            log.warning("could not drop %s of deleted data source %d: %s", hnsw_index_name(ds.id), ds.id, exc)
        return True

    def data_source_counts(self, data_source_ids: Sequence[int]) -> dict[int, DatasetCounts]:
        available = DISPLAY_STATUS_SQL["available"].replace("d.", "")
        with self.engine.read() as conn:
            found = conn.execute(
                "SELECT data_source_id, count(*), coalesce(sum(coalesce(CASE WHEN jsonb_typeof(dify->'word_count') "
                "= 'number' THEN (dify->>'word_count')::numeric END, text_size)), 0), "
                f"count(*) FILTER (WHERE {available}) "
                "FROM documents WHERE data_source_id = ANY(%s) GROUP BY data_source_id",
                (list(data_source_ids),),
            ).fetchall()
        out = {i: DatasetCounts(0, 0, 0) for i in data_source_ids}
        for r in found:
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
                "SELECT batch FROM documents WHERE data_source_id = %s AND document_id = %s FOR UPDATE",
                (ds.id, doc.document_id),
            ).fetchone()
            kept = str(old[0]) if keep_batch and old is not None and old[0] else batch
            if old is not None and dify.get("stored_file") is not None:  # a replaced file goes with its document
                file_id = (dify.get("file") or {}).get("id")
                drop_files_of(conn, "data_source_id = %s AND document_id = %s AND dify->'file'->>'id' <> %s",
                              (ds.id, doc.document_id, None if file_id is None else str(file_id)))  # fmt: skip
            columns = {"dify": json.dumps(dict(dify)), "batch": kept}
            pk, existed = write_document_row(conn, ds.id, doc, now_ms, "pending", columns, new_uuid=doc.document_id)
            if existed:
                conn.execute(
                    "UPDATE segments SET status = 're_segment', updated_at = %s WHERE document_pk = %s", (now_ms, pk)
                )
            job = queue_index_job(conn, ds, doc, now_ms)
            row = conn.execute(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = %s", (pk,)).fetchone()
        return rows.document(_one(row)), job

    def get_document_by_uuid(self, ds: DataSource, uuid: str, with_text: bool = False) -> Document | None:
        cols = rows.DOCUMENT_COLS + (", text" if with_text else "")
        with self.engine.read() as conn:
            row = conn.execute(
                f"SELECT {cols} FROM documents WHERE data_source_id = %s AND uuid = %s", (ds.id, uuid)
            ).fetchone()
        if row is None:
            return None
        return rows.document(row, text=str(row[rows.DOCUMENT_TEXT_AT]) if with_text else None)

    def find_document_by_title(self, ds: DataSource, title: str) -> Document | None:
        """The enabled Dify document named ``title`` (Dify reuses it for a same-name create)."""
        with self.engine.read() as conn:
            row = conn.execute(
                f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE data_source_id = %s AND title = %s AND enabled "
                "AND dify IS NOT NULL ORDER BY id LIMIT 1",
                (ds.id, title),
            ).fetchone()
        return rows.document(row) if row else None

    def list_dify_documents(
        self, ds: DataSource, keyword: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[list[Document], int]:
        where = "d.data_source_id = %s"
        params: list[object] = [ds.id]
        if keyword:
            where += " AND strpos(lower(d.title), lower(%s)) > 0"
            params.append(keyword)
        if status is not None:
            where += f" AND ({DISPLAY_STATUS_SQL[status]})"
        with self.engine.snapshot() as conn:
            total = int(_one(conn.execute(f"SELECT count(*) FROM documents d WHERE {where}", params).fetchone())[0])
            found = conn.execute(
                f"SELECT {D_DOCUMENT_COLS} FROM documents d WHERE {where} "
                "ORDER BY d.created DESC, d.position DESC LIMIT %s OFFSET %s",
                [*params, limit, offset],
            ).fetchall()
        return [rows.document(r) for r in found], total

    def documents_in_batch(self, ds: DataSource, batch: str) -> list[Document]:
        with self.engine.read() as conn:
            found = conn.execute(
                f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE data_source_id = %s AND batch = %s "
                "ORDER BY position",
                (ds.id, batch),
            ).fetchall()
        return [rows.document(r) for r in found]

    def document_section(self, ds: DataSource, document_id: str) -> tuple[int, str, str, dict[str, Any] | None] | None:
        """``(pk, hash, section_json, dify)`` of a stored document (what an index job reads)."""
        with self.engine.read() as conn:
            row = conn.execute(
                "SELECT id, hash, section, dify FROM documents WHERE data_source_id = %s AND document_id = %s",
                (ds.id, document_id),
            ).fetchone()
        if row is None:
            return None
        return int(row[0]), str(row[1]), str(row[2]), None if row[3] is None else dict(rows.js(row[3]))

    def set_index_progress(
        self, ds: DataSource, document_id: str, doc_hash: str, state: str, dify_updates: Mapping[str, Any]
    ) -> bool:
        """Move a document still at ``doc_hash`` (and not yet indexed) to pipeline ``state``, merging
        ``dify_updates`` into its processing record. False when the document changed or is gone."""
        with self.engine.write() as conn:
            row = conn.execute(
                "SELECT id, dify FROM documents WHERE data_source_id = %s AND document_id = %s AND hash = %s "
                "AND index_state NOT IN ('indexed', 'failed') FOR UPDATE",
                (ds.id, document_id, doc_hash),
            ).fetchone()
            if row is None:
                return False
            record = merge_patch(rows.js(row[1], {}), dict(dify_updates))
            conn.execute(
                "UPDATE documents SET index_state = %s, dify = %s WHERE id = %s", (state, json.dumps(record), row[0])
            )
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
        a segment has children; ``unit_vectors``/``unit_tokens`` in that order), merge ``dify_updates`` and mark
        it indexed (with ``text``, the text parsed from its file, as its content); mark the job done either way.
        None when the job was obsolete."""
        document_id, doc_hash = job.payload_str("document_id"), job.payload_str("hash")
        vecs = np.ascontiguousarray(unit_vectors, dtype=np.float32)
        with self.engine.write() as conn:
            _finish_index_job(conn, job.id, now_ms)  # the job row first, then the document's: as PgJobs locks them
            old = conn.execute(
                "SELECT id, hash, index_state, enabled, archived, dify FROM documents "
                "WHERE data_source_id = %s AND document_id = %s FOR UPDATE",
                (ds.id, document_id),
            ).fetchone()
            if old is None or str(old[1]) != doc_hash or str(old[2]) == IndexState.INDEXED:
                return None
            pk = int(old[0])
            searchable = bool(old[3]) and not bool(old[4])
            conn.execute("DELETE FROM segments WHERE document_pk = %s", (pk,))
            chunks: list[ChunkWrite] = []
            unit = 0
            for position, seg in enumerate(segments, start=1):
                seg_pk = _insert_segment(conn, ds.id, pk, position, seg, "completed", now_ms)
                if seg.children:
                    child_pks = [
                        int(r[0])
                        for r in conn.execute(
                            "SELECT id FROM child_chunks WHERE segment_pk = %s ORDER BY position", (seg_pk,)
                        ).fetchall()
                    ]
                    for child, child_pk in zip(seg.children, child_pks, strict=True):
                        chunks.append(ChunkWrite(unit, child.content, "", unit_tokens[unit], seg_pk, child_pk))
                        unit += 1
                else:
                    chunks.append(ChunkWrite(unit, seg.content, "", unit_tokens[unit], seg_pk, None))
                    unit += 1
            if unit != len(vecs):
                raise InvalidRequest(f"{unit} index units but {len(vecs)} vectors")
            chunk_writes = _hashed(chunks) if searchable else []
            added = check_vectors(ds, chunk_writes, vecs if searchable else vecs[:0])
            delete_chunks(conn, ds.id, "document_pk = %s", (pk,))
            insert_chunks(conn, ds.id, pk, chunk_writes, added)
            record = merge_patch(rows.js(old[5], {}), dict(dify_updates))
            conn.execute(
                "UPDATE documents SET chunk_count = %s, token_count = %s, index_state = 'indexed', "
                "index_error = NULL, dify = %s WHERE id = %s",
                (len(chunk_writes), sum(unit_tokens), json.dumps(record), pk),
            )
            if text is not None:  # the text parsed from the document's file
                section = json.dumps({"prefix": None, "content": text, "sections": []}, ensure_ascii=False)
                conn.execute(
                    "UPDATE documents SET text = %s, section = %s, text_size = %s WHERE id = %s",
                    (text, section, len(text), pk),
                )
            row = conn.execute(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = %s", (pk,)).fetchone()
        return rows.document(_one(row))

    def replace_document_chunks(
        self, ds: DataSource, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors
    ) -> None:
        """Replace a document's chunks (rows, BM25 terms, embeddings) without touching its content: after segment
        edits, or to take a disabled or archived document out of the indexes (no chunks)."""
        vecs = check_vectors(ds, chunks, vectors)
        with self.engine.write() as conn:
            if conn.execute("SELECT id FROM documents WHERE id = %s FOR UPDATE", (document_pk,)).fetchone() is None:
                return
            delete_chunks(conn, ds.id, "document_pk = %s", (document_pk,))
            insert_chunks(conn, ds.id, document_pk, chunks, vecs)
            conn.execute(
                "UPDATE documents SET chunk_count = %s, updated = %s WHERE id = %s",
                (len(chunks), rows.now_ms(), document_pk),
            )

    def set_document_flags(
        self, ds: DataSource, document_pk: int, *, enabled: bool | None = None, archived: bool | None = None
    ) -> None:
        sets: list[str] = ["updated = %s"]
        now = rows.now_ms()
        params: list[object] = [now]
        if enabled is not None:
            sets += ["enabled = %s", "disabled_at = %s"]
            params += [bool(enabled), None if enabled else now]
        if archived is not None:
            sets.append("archived = %s")
            params.append(bool(archived))
        with self.engine.write() as conn:
            conn.execute(f"UPDATE documents SET {', '.join(sets)} WHERE id = %s", [*params, document_pk])

    def patch_dify_record(self, document_pk: int, updates: Mapping[str, Any]) -> None:
        with self.engine.write() as conn:
            row = conn.execute(
                "SELECT dify FROM documents WHERE id = %s AND dify IS NOT NULL FOR UPDATE", (document_pk,)
            ).fetchone()
            if row is None:
                return
            record = merge_patch(rows.js(row[0], {}), dict(updates))
            conn.execute("UPDATE documents SET dify = %s WHERE id = %s", (json.dumps(record), document_pk))

    def set_doc_metadata(self, document_pk: int, values: Mapping[str, Any]) -> None:
        with self.engine.write() as conn:
            conn.execute(
                "UPDATE documents SET doc_metadata = %s WHERE id = %s", (json.dumps(dict(values)), document_pk)
            )

    # --- segments and child chunks -------------------------------------------------------------------------------
    def list_segments(
        self, document_pk: int, statuses: Sequence[str], keyword: str | None, limit: int, offset: int
    ) -> tuple[list[Segment], int]:
        where = "document_pk = %s"
        params: list[object] = [document_pk]
        if statuses:
            where += " AND status = ANY(%s)"
            params.append(list(statuses))
        if keyword:
            where += " AND strpos(lower(content), lower(%s)) > 0"
            params.append(keyword)
        with self.engine.snapshot() as conn:
            total = int(_one(conn.execute(f"SELECT count(*) FROM segments WHERE {where}", params).fetchone())[0])
            found = conn.execute(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE {where} ORDER BY position, id LIMIT %s OFFSET %s",
                [*params, limit, offset],
            ).fetchall()
            return self._with_children(conn, found), total

    def document_segments(self, document_pk: int) -> list[Segment]:
        with self.engine.snapshot() as conn:
            found = conn.execute(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE document_pk = %s ORDER BY position, id", (document_pk,)
            ).fetchall()
            return self._with_children(conn, found)

    def segments_by_pk(self, segment_pks: Sequence[int]) -> dict[int, Segment]:
        with self.engine.snapshot() as conn:
            found = conn.execute(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE id = ANY(%s)", (list(segment_pks),)
            ).fetchall()
            return {s.pk: s for s in self._with_children(conn, found)}

    def get_segment(self, document_pk: int, uuid: str) -> Segment | None:
        with self.engine.snapshot() as conn:
            found = conn.execute(
                f"SELECT {SEGMENT_COLS} FROM segments WHERE document_pk = %s AND uuid = %s", (document_pk, uuid)
            ).fetchall()
            segs = self._with_children(conn, found)
        return segs[0] if segs else None

    @staticmethod
    def _with_children(conn: psycopg.Connection, found: Sequence[Sequence[object]]) -> list[Segment]:
        pks = [int(str(r[0])) for r in found]
        kids: dict[int, list[ChildChunk]] = {pk: [] for pk in pks}
        if pks:
            for r in conn.execute(
                f"SELECT {CHILD_COLS} FROM child_chunks WHERE segment_pk = ANY(%s) ORDER BY segment_pk, position, id",
                (pks,),
            ).fetchall():
                kids[int(r[2])].append(child_row(r))
        return [segment_row(r, tuple(kids[int(str(r[0]))])) for r in found]

    def add_segments(self, ds: DataSource, document_pk: int, segments: Sequence[SegmentWrite]) -> list[int]:
        now = rows.now_ms()
        with self.engine.write() as conn:
            conn.execute("SELECT id FROM documents WHERE id = %s FOR UPDATE", (document_pk,))  # positions in turn
            start = int(
                _one(
                    conn.execute(
                        "SELECT coalesce(max(position), 0) FROM segments WHERE document_pk = %s", (document_pk,)
                    ).fetchone()
                )[0]
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
                    "UPDATE segments SET content = %s, answer = %s, keywords = %s, hash = %s, word_count = %s, "
                    "tokens = %s, status = 'completed', updated_at = %s, completed_at = %s WHERE id = %s",
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
                    "UPDATE segments SET enabled = %s, disabled_at = %s, updated_at = %s WHERE id = %s",
                    (bool(enabled), None if enabled else now, now, segment_pk),
                )
            if children is not None:
                row = conn.execute("SELECT document_pk FROM segments WHERE id = %s FOR UPDATE", (segment_pk,))
                doc_pk = int(_one(row.fetchone())[0])
                conn.execute("DELETE FROM child_chunks WHERE segment_pk = %s", (segment_pk,))
                _insert_children(conn, segment_pk, doc_pk, children, now)

    def delete_segment(self, segment_pk: int) -> bool:
        with self.engine.write() as conn:
            return conn.execute("DELETE FROM segments WHERE id = %s", (segment_pk,)).rowcount > 0

    def add_child_chunk(self, segment: Segment, content: str) -> ChildChunk:
        now = rows.now_ms()
        with self.engine.write() as conn:
            # the segment's row lock orders concurrent additions (positions stay distinct)
            conn.execute("SELECT id FROM segments WHERE id = %s FOR UPDATE", (segment.pk,))
            row = conn.execute(
                "INSERT INTO child_chunks (uuid, segment_pk, document_pk, position, content, word_count, type, "
                "created_at, updated_at) SELECT %s, %s, %s, coalesce(max(position), 0) + 1, %s, %s, 'customized', "
                f"%s, %s FROM child_chunks WHERE segment_pk = %s RETURNING {CHILD_COLS}",
                (rows.new_uuid(), segment.pk, segment.document_pk, content, len(content), now, now, segment.pk),
            ).fetchone()
        return child_row(_one(row))

    def update_child_chunk(self, child_pk: int, content: str) -> ChildChunk:
        with self.engine.write() as conn:
            row = conn.execute(
                "UPDATE child_chunks SET content = %s, word_count = %s, type = 'customized', updated_at = %s "
                f"WHERE id = %s RETURNING {CHILD_COLS}",
                (content, len(content), rows.now_ms(), child_pk),
            ).fetchone()
        if row is None:
            raise StorageError(f"child chunk {child_pk} vanished")
        return child_row(row)

    def delete_child_chunk(self, child_pk: int) -> bool:
        with self.engine.write() as conn:
            return conn.execute("DELETE FROM child_chunks WHERE id = %s", (child_pk,)).rowcount > 0

    def bump_hit_counts(self, segment_pks: Sequence[int]) -> None:
        if not segment_pks:
            return
        with self.engine.write() as conn:
            conn.execute("UPDATE segments SET hit_count = hit_count + 1 WHERE id = ANY(%s)", (list(segment_pks),))

    # --- metadata fields -----------------------------------------------------------------------------------------
    def create_metadata_field(self, ds: DataSource, name: str, type_: str) -> MetadataField:
        try:
            with self.engine.write() as conn:
                row = conn.execute(
                    "INSERT INTO metadata_fields (uuid, data_source_id, name, type, created_at) "
                    f"VALUES (%s, %s, %s, %s, %s) RETURNING {FIELD_COLS}",
                    (rows.new_uuid(), ds.id, name, type_, rows.now_ms()),
                ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyExists("Metadata name already exists.", code="metadata_name_taken") from exc
        return _field(_one(row))

    def list_metadata_fields(self, ds: DataSource) -> list[tuple[MetadataField, int]]:
        """Each field with the number of documents holding a value for it (its key in their ``doc_metadata``)."""
        with self.engine.read() as conn:
            found = conn.execute(
                "SELECT f.id, f.uuid, f.data_source_id, f.name, f.type, f.created_at, "
                "(SELECT count(*) FROM documents d WHERE d.data_source_id = f.data_source_id "
                "AND jsonb_exists(d.doc_metadata, f.name)) "
                "FROM metadata_fields f WHERE f.data_source_id = %s ORDER BY f.id",
                (ds.id,),
            ).fetchall()
        return [(_field(r), int(r[6])) for r in found]

    def rename_metadata_field(self, ds: DataSource, field: MetadataField, name: str) -> MetadataField:
        """Rename a field and the key of its values in every document of the data source."""
        try:
            with self.engine.write() as conn:
                conn.execute("UPDATE metadata_fields SET name = %s WHERE id = %s", (name, field.pk))
                conn.execute(
                    "UPDATE documents SET doc_metadata = (doc_metadata - %s::text) || jsonb_build_object(%s::text, "
                    "doc_metadata -> %s::text) WHERE data_source_id = %s AND jsonb_exists(doc_metadata, %s::text)",
                    (field.name, name, field.name, ds.id, field.name),
                )
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyExists("Metadata name already exists.", code="metadata_name_taken") from exc
        return MetadataField(field.pk, field.uuid, field.data_source_id, name, field.type, field.created_at)

    def delete_metadata_field(self, ds: DataSource, field: MetadataField) -> None:
        with self.engine.write() as conn:
            conn.execute("DELETE FROM metadata_fields WHERE id = %s", (field.pk,))
            conn.execute(
                "UPDATE documents SET doc_metadata = doc_metadata - %s::text "
                "WHERE data_source_id = %s AND jsonb_exists(doc_metadata, %s::text)",
                (field.name, ds.id, field.name),
            )

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
                made = conn.execute(
                    "INSERT INTO dataset_tags (uuid, workspace_id, name, created_at) VALUES (%s, %s, %s, %s) "
                    "RETURNING id",
                    (rows.new_uuid(), workspace_id, name, rows.now_ms()),
                ).fetchone()
                row = conn.execute(self._TAG_SELECT + "WHERE t.id = %s", (_one(made)[0],)).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyExists("Tag name already exists", code="tag_name_taken") from exc
        return self._tag(_one(row))

    def list_tags(self, workspace_id: int) -> list[DatasetTag]:
        with self.engine.read() as conn:
            found = conn.execute(self._TAG_SELECT + "WHERE t.workspace_id = %s ORDER BY t.id", (workspace_id,))
            return [self._tag(r) for r in found.fetchall()]

    def get_tag(self, workspace_id: int, uuid: str) -> DatasetTag | None:
        with self.engine.read() as conn:
            row = conn.execute(
                self._TAG_SELECT + "WHERE t.workspace_id = %s AND t.uuid = %s", (workspace_id, uuid)
            ).fetchone()
        return self._tag(row) if row else None

    def rename_tag(self, tag: DatasetTag, name: str) -> DatasetTag:
        try:
            with self.engine.write() as conn:
                conn.execute("UPDATE dataset_tags SET name = %s WHERE id = %s", (name, tag.pk))
                row = conn.execute(self._TAG_SELECT + "WHERE t.id = %s", (tag.pk,)).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise AlreadyExists("Tag name already exists", code="tag_name_taken") from exc
        return self._tag(_one(row))

    def delete_tag(self, tag: DatasetTag) -> None:
        with self.engine.write() as conn:
            conn.execute("DELETE FROM dataset_tags WHERE id = %s", (tag.pk,))

    def bind_tags(self, data_source_id: int, tag_pks: Sequence[int]) -> None:
        if not tag_pks:
            return
        with self.engine.write() as conn:
            conn.execute(
                "INSERT INTO dataset_tag_bindings (tag_pk, data_source_id, created_at) "
                "SELECT DISTINCT t, %s, %s FROM unnest(%s::bigint[]) t ON CONFLICT DO NOTHING",
                (data_source_id, rows.now_ms(), list(tag_pks)),
            )

    def unbind_tags(self, data_source_id: int, tag_pks: Sequence[int]) -> None:
        if not tag_pks:
            return
        with self.engine.write() as conn:
            conn.execute(
                "DELETE FROM dataset_tag_bindings WHERE tag_pk = ANY(%s) AND data_source_id = %s",
                (list(tag_pks), data_source_id),
            )

    def tags_of_data_sources(self, data_source_ids: Sequence[int]) -> dict[int, list[DatasetTag]]:
        with self.engine.read() as conn:
            found = conn.execute(
                self._TAG_SELECT.replace("FROM dataset_tags t ", ", b2.data_source_id FROM dataset_tags t ")
                + "JOIN dataset_tag_bindings b2 ON b2.tag_pk = t.id WHERE b2.data_source_id = ANY(%s) ORDER BY t.id",
                (list(data_source_ids),),
            ).fetchall()
        out: dict[int, list[DatasetTag]] = {i: [] for i in data_source_ids}
        for r in found:
            out[int(r[6])].append(self._tag(r))
        return out

    # --- files ---------------------------------------------------------------------------------------------------
    def save_file(self, workspace_id: int, name: str, extension: str, mime_type: str, data: bytes) -> UploadedFile:
        with self.engine.write() as conn:
            row = conn.execute(
                "INSERT INTO files (uuid, workspace_id, name, size, extension, mime_type, data, created_at) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {FILE_COLS}",
                (rows.new_uuid(), workspace_id, name, len(data), extension, mime_type, bytes(data), rows.now_ms()),
            ).fetchone()
        return _file(_one(row))

    def chunk_segments(self, chunk_pks: Sequence[int]) -> dict[int, tuple[int | None, int | None]]:
        """The segment and child chunk each chunk indexes (None, None for Dust chunks)."""
        with self.engine.read() as conn:
            found = conn.execute(
                "SELECT id, segment_pk, child_pk FROM chunks WHERE id = ANY(%s)", (list(chunk_pks),)
            ).fetchall()
        return {int(r[0]): (_opt_int(r[1]), _opt_int(r[2])) for r in found}

    def instance_secret(self, name: str) -> str:
        """A random secret of this installation, made on first use (every process of it sees the same one)."""
        with self.engine.read() as conn:
            row = conn.execute("SELECT value FROM instance_secrets WHERE name = %s", (name,)).fetchone()
        if row is not None:
            return str(row[0])
        with self.engine.write() as conn:
            conn.execute(
                "INSERT INTO instance_secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_hex(32)),
            )
            row = conn.execute("SELECT value FROM instance_secrets WHERE name = %s", (name,)).fetchone()
        return str(_one(row)[0])

    def get_file(self, workspace_id: int, uuid: str) -> tuple[UploadedFile, bytes] | None:
        with self.engine.read() as conn:
            row = conn.execute(
                f"SELECT {FILE_COLS}, data FROM files WHERE workspace_id = %s AND uuid = %s", (workspace_id, uuid)
            ).fetchone()
        if row is None:
            return None
        return _file(row), bytes(row[8])

    def file_data(self, uuid: str) -> bytes | None:
        with self.engine.read() as conn:
            row = conn.execute("SELECT data FROM files WHERE uuid = %s", (uuid,)).fetchone()
        return None if row is None else bytes(row[0])
