"""Document rows with their tag and parent rows, and the uploaded files that go with them: the one writer the
synchronous upsert, async upserts, index jobs and Dify's documents share (in the caller's transaction)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from alexandria.domain.models import Document
from alexandria.storage import rows
from alexandria.storage.base import DocumentWrite
from alexandria.storage.database import Conn, Row
from alexandria.storage.errors import missing_row


def next_position(conn: Conn, data_source_id: int) -> int:
    found = conn.scalar(
        "SELECT coalesce(max(position), 0) + 1 FROM documents WHERE data_source_id = ?", (data_source_id,)
    )
    return int(found or 1)


def document_row(conn: Conn, pk: int) -> Document:
    return rows.document(missing_row(conn.one(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = ?", (pk,))))


def locked_document(conn: Conn, data_source_id: int, document_id: str, columns: str = "id") -> Row | None:
    """``columns`` of a document, its row locked until the transaction ends (so concurrent writers serialise)."""
    return conn.one(
        f"SELECT {columns} FROM documents WHERE data_source_id = ? AND document_id = ?{conn.dialect.for_update}",
        (data_source_id, document_id),
    )


def write_document_row(
    conn: Conn,
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
    old = locked_document(conn, data_source_id, doc.document_id)
    if old is not None:
        pk = int(old[0])
        conn.execute("DELETE FROM document_tags WHERE document_pk = ?", (pk,))
        conn.execute("DELETE FROM document_parents WHERE document_pk = ?", (pk,))
        assignments = ", ".join(f"{name} = ?" for name in values)  # column names are this module's, never input
        conn.execute(f"UPDATE documents SET {assignments} WHERE id = ?", (*values.values(), pk))
    else:
        values = {"chunk_count": 0, "token_count": 0, **values, "created": now_ms, "data_source_id": data_source_id,
                  "document_id": doc.document_id, "uuid": new_uuid or rows.new_uuid(),
                  "position": next_position(conn, data_source_id)}  # fmt: skip
        marks = ", ".join("?" for _ in values)
        pk = conn.returning_id(
            f"INSERT INTO documents ({', '.join(values)}) VALUES ({marks}) RETURNING id", tuple(values.values())
        )
    conn.executemany(
        "INSERT INTO document_tags (tag, document_pk) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(t, pk) for t in dict.fromkeys(doc.tags)],
    )
    write_parent_rows(conn, pk, doc.parents)
    return pk, old is not None


def write_parent_rows(conn: Conn, document_pk: int, parents: Sequence[str]) -> None:
    conn.executemany(
        "INSERT INTO document_parents (parent, document_pk) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(p, document_pk) for p in dict.fromkeys(parents)],
    )


def forget_segments(conn: Conn, document_pk: int) -> None:
    """A document rewritten through Dust: its Dify segments and processing record no longer describe it."""
    conn.execute("DELETE FROM segments WHERE document_pk = ?", (document_pk,))
    conn.execute("UPDATE documents SET dify = NULL WHERE id = ?", (document_pk,))


def drop_files_of(conn: Conn, where: str, params: Sequence[object]) -> int:
    """Delete the uploaded files of the documents matching ``where`` (about to be deleted or replaced)."""
    file_id = conn.dialect.json_text("dify", "file", "id")
    stored = conn.dialect.json_flag("dify", "stored_file")
    cur = conn.execute(
        f"DELETE FROM files WHERE uuid IN (SELECT {file_id} FROM documents "
        f"WHERE dify IS NOT NULL AND {stored} AND {where})",
        tuple(params),
    )
    return int(cur.rowcount)
