"""Chunk rows and their FTS entries, shared by the synchronous upsert, the index jobs and Dify's segments."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from alexandria.ingest.base import Vectors
from alexandria.storage.base import ChunkWrite


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
