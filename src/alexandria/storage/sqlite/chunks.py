"""Document rows, chunk rows and their FTS entries: shared by the synchronous upsert, async upserts, the index jobs
and Dify's documents and segments."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Mapping, Sequence

from alexandria.ingest.base import Vectors
from alexandria.storage.base import ChunkWrite, DocumentWrite


def insert_chunks(
    conn: sqlite3.Connection,
    fts: str,
    data_source_id: int,
    document_pk: int,
    chunks: Sequence[ChunkWrite],
    vecs: Vectors,
) -> list[int]:
    """Insert a document's chunks (rows and FTS entries); returns their new ids, in order."""
    added: list[int] = []
    for chunk, vec in zip(chunks, vecs, strict=True):
        cur = conn.execute(
            "INSERT INTO chunks (data_source_id, document_pk, chunk_offset, text, hash, token_count, vector, "
            "segment_pk, child_pk) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                data_source_id,
                document_pk,
                chunk.offset,
                chunk.text,
                chunk.hash,
                chunk.token_count,
                vec.tobytes(),
                chunk.segment_pk,
                chunk.child_pk,
            ),
        )
        chunk_pk = int(cur.lastrowid or 0)
        conn.execute(f"INSERT INTO {fts} (rowid, text) VALUES (?, ?)", (chunk_pk, chunk.text))
        added.append(chunk_pk)
    return added


def next_position(conn: sqlite3.Connection, data_source_id: int) -> int:
    row = conn.execute(
        "SELECT coalesce(max(position), 0) + 1 FROM documents WHERE data_source_id = ?", (data_source_id,)
    )
    return int(row.fetchone()[0])


def forget_segments(conn: sqlite3.Connection, document_pk: int) -> None:
    """A document rewritten through Dust: its Dify segments and processing record no longer describe it."""
    conn.execute("DELETE FROM segments WHERE document_pk = ?", (document_pk,))
    conn.execute("UPDATE documents SET dify = NULL WHERE id = ?", (document_pk,))


def write_document_row(
    conn: sqlite3.Connection,
    data_source_id: int,
    doc: DocumentWrite,
    now_ms: int,
    state: str,
    columns: Mapping[str, object] | None = None,
    new_uuid: str | None = None,
) -> tuple[int, bool]:
    """Insert or update a document's row (content, metadata, index state, plus ``columns``) and its tag and parent
    rows, in the caller's transaction. A new document gets ``new_uuid`` (default: a fresh one) and the next position.
    Returns ``(pk, existed)``; chunks, segments and jobs are the caller's."""
    values: dict[str, object] = {
        "title": doc.title,
        "mime_type": doc.mime_type,
        "source_url": doc.source_url,
        "timestamp": doc.timestamp,
        "tags": json.dumps(list(doc.tags)),
        "parents": json.dumps(list(doc.parents)),
        "parent_id": doc.parent_id,
        "section": doc.section_json,
        "text": doc.text,
        "hash": doc.hash,
        "text_size": len(doc.text),
        "updated": now_ms,
        "index_state": state,
        "index_error": None,
        **(columns or {}),
    }
    old = conn.execute(
        "SELECT id FROM documents WHERE data_source_id = ? AND document_id = ?", (data_source_id, doc.document_id)
    ).fetchone()
    if old is not None:
        pk = int(old[0])
        conn.execute("DELETE FROM document_tags WHERE document_pk = ?", (pk,))
        conn.execute("DELETE FROM document_parents WHERE document_pk = ?", (pk,))
        assignments = ", ".join(f"{name} = ?" for name in values)  # column names are this module's, never input
        conn.execute(f"UPDATE documents SET {assignments} WHERE id = ?", (*values.values(), pk))
    else:
        values = {"chunk_count": 0, "token_count": 0, **values, "created": now_ms, "data_source_id": data_source_id,
                  "document_id": doc.document_id, "uuid": new_uuid or str(uuid.uuid4()),
                  "position": next_position(conn, data_source_id)}  # fmt: skip
        marks = ", ".join("?" for _ in values)
        cur = conn.execute(f"INSERT INTO documents ({', '.join(values)}) VALUES ({marks})", tuple(values.values()))
        pk = int(cur.lastrowid or 0)
    conn.executemany(
        "INSERT OR IGNORE INTO document_tags (tag, document_pk) VALUES (?, ?)", [(t, pk) for t in doc.tags]
    )
    conn.executemany(
        "INSERT OR IGNORE INTO document_parents (parent, document_pk) VALUES (?, ?)", [(p, pk) for p in doc.parents]
    )
    return pk, old is not None


def drop_files_of(conn: sqlite3.Connection, where: str, params: Sequence[object]) -> int:
    """Delete the uploaded files of the documents matching ``where`` (about to be deleted or replaced)."""
    cur = conn.execute(
        "DELETE FROM files WHERE uuid IN (SELECT json_extract(dify, '$.file.id') FROM documents "
        f"WHERE dify IS NOT NULL AND json_extract(dify, '$.stored_file') AND {where})",
        tuple(params),
    )
    return int(cur.rowcount)
