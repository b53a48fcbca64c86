"""Legacy raw-connection row writers of the PostgreSQL mixins not yet written over the facade (``jobs.py``,
``dify.py``); the shared ones are ``storage/common/document_rows.py``'s."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence

import psycopg
from psycopg import sql

from alexandria.storage.base import DocumentWrite


def next_position(conn: psycopg.Connection, data_source_id: int) -> int:
    row = conn.execute(
        "SELECT coalesce(max(position), 0) + 1 FROM documents WHERE data_source_id = %s", (data_source_id,)
    ).fetchone()
    return int(row[0]) if row else 1


def write_document_row(
    conn: psycopg.Connection,
    data_source_id: int,
    doc: DocumentWrite,
    now_ms: int,
    state: str,
    columns: Mapping[str, object] | None = None,
    new_uuid: str | None = None,
) -> tuple[int, bool]:
    """Insert or update a document's row and its tag and parent rows (see the SQLite twin,
    ``storage.sqlite.chunks.write_document_row``). Returns ``(pk, existed)``."""
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
        "SELECT id FROM documents WHERE data_source_id = %s AND document_id = %s FOR UPDATE",
        (data_source_id, doc.document_id),
    ).fetchone()
    if old is not None:
        pk = int(old[0])
        conn.execute("DELETE FROM document_tags WHERE document_pk = %s", (pk,))
        conn.execute("DELETE FROM document_parents WHERE document_pk = %s", (pk,))
        assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in values)
        conn.execute(sql.SQL("UPDATE documents SET {} WHERE id = %s").format(assignments), (*values.values(), pk))
    else:
        values = {**values, "created": now_ms, "data_source_id": data_source_id, "document_id": doc.document_id,
                  "uuid": new_uuid or str(uuid.uuid4()), "position": next_position(conn, data_source_id)}  # fmt: skip
        names = sql.SQL(", ").join(sql.Identifier(k) for k in values)
        marks = sql.SQL(", ").join(sql.Placeholder() for _ in values)
        row = conn.execute(
            sql.SQL("INSERT INTO documents ({}) VALUES ({}) RETURNING id").format(names, marks), tuple(values.values())
        ).fetchone()
        assert row is not None
        pk = int(row[0])
    if doc.tags:
        conn.execute(
            "INSERT INTO document_tags (tag, document_pk) SELECT DISTINCT t, %s FROM unnest(%s::text[]) t "
            "ON CONFLICT DO NOTHING",
            (pk, list(doc.tags)),
        )
    if doc.parents:
        conn.execute(
            "INSERT INTO document_parents (parent, document_pk) SELECT DISTINCT p, %s FROM unnest(%s::text[]) p "
            "ON CONFLICT DO NOTHING",
            (pk, list(doc.parents)),
        )
    return pk, old is not None


def forget_segments(conn: psycopg.Connection, document_pk: int) -> None:
    """A document rewritten through Dust: its Dify segments and processing record no longer describe it."""
    conn.execute("DELETE FROM segments WHERE document_pk = %s", (document_pk,))
    conn.execute("UPDATE documents SET dify = NULL WHERE id = %s", (document_pk,))


def drop_files_of(conn: psycopg.Connection, where: str, params: Sequence[object]) -> int:
    """Delete the uploaded files of the documents matching ``where`` (about to be deleted or replaced)."""
    cur = conn.execute(
        "DELETE FROM files WHERE uuid IN (SELECT dify->'file'->>'id' FROM documents WHERE dify IS NOT NULL "
        f"AND coalesce((dify->>'stored_file')::boolean, false) AND {where})",
        tuple(params),
    )
    return int(cur.rowcount)
