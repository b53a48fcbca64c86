"""The embedded store's chunk index: chunk rows, their FTS5 entries (one table per data source) and the usearch HNSW
cache, which mirrors each committed change when it was in step with the database (``vector_version``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from alexandria.domain.models import DataSource
from alexandria.errors import StorageError
from alexandria.ingest.base import Vectors
from alexandria.storage.base import ChunkWrite
from alexandria.storage.chunk_index import checked_vectors
from alexandria.storage.database import Conn, Database
from alexandria.storage.sqlite.db import quote_ident
from alexandria.storage.sqlite.vectors import VectorIndexes

if TYPE_CHECKING:
    from alexandria.storage.sqlite.bulk_load import SqliteChunkLoad

FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"


def fts_table(data_source_id: int) -> str:
    return quote_ident(f"fts_{int(data_source_id)}")


def vector_version(conn: Conn, data_source_id: int) -> int:
    found = conn.scalar("SELECT vector_version FROM data_sources WHERE id = ?", (data_source_id,))
    if found is None:
        raise StorageError(f"data source {data_source_id} vanished")
    return int(found)


class SqliteChunkChange:
    def __init__(self, conn: Conn, ds: DataSource) -> None:
        self.conn = conn
        self.ds = ds
        self.fts = fts_table(ds.id)
        self.removed: list[int] = []
        self.added: list[int] = []
        self.vectors: list[Vectors] = []

    def add(self, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors) -> list[int]:
        vecs = checked_vectors(self.ds, chunks, vectors)
        ids: list[int] = []
        for chunk, vec in zip(chunks, vecs, strict=True):
            pk = self.conn.returning_id(
                "INSERT INTO chunks (data_source_id, document_pk, chunk_offset, text, hash, token_count, vector, "
                "segment_pk, child_pk) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (self.ds.id, document_pk, chunk.offset, chunk.text, chunk.hash, chunk.token_count, vec.tobytes(),
                 chunk.segment_pk, chunk.child_pk),
            )  # fmt: skip
            self.conn.execute(f"INSERT INTO {self.fts} (rowid, text) VALUES (?, ?)", (pk, chunk.text))
            ids.append(pk)
        self.added += ids
        if ids:
            self.vectors.append(vecs)
        return ids

    def remove_document(self, document_pk: int) -> None:
        old = self.conn.all("SELECT id, text FROM chunks WHERE document_pk = ?", (document_pk,))
        self.conn.executemany(f"INSERT INTO {self.fts} ({self.fts}, rowid, text) VALUES ('delete', ?, ?)", old)
        self.conn.execute("DELETE FROM chunks WHERE document_pk = ?", (document_pk,))
        self.removed += [int(r[0]) for r in old]


def create_fts(conn: Conn, ds: DataSource) -> None:
    conn.execute(
        f"CREATE VIRTUAL TABLE {fts_table(ds.id)} USING fts5(text, content='chunks', content_rowid='id', "
        f"tokenize='{FTS_TOKENIZER}')"
    )


class SqliteChunkIndex:
    vector_column = "vector"

    def __init__(self, db: Database, vectors: VectorIndexes) -> None:
        self.db = db
        self.vectors = vectors

    def stored_vector(self, value: object) -> Vectors:
        if not isinstance(value, bytes | memoryview):
            raise StorageError(f"a stored vector is a BLOB, not {type(value).__name__}")
        return np.frombuffer(value, dtype=np.float32)  # stored as float32 little-endian

    @contextlib.contextmanager
    def change(self, ds: DataSource) -> Iterator[SqliteChunkChange]:
        index = self.vectors.get(ds.id, ds.dim)
        with index.lock:
            with self.db.write() as conn:
                before = vector_version(conn, ds.id)
                if before == 0 and index.version == -1 and not len(index):
                    index.version = 0  # a new data source (no chunk ever written): its empty index is in step
                change = SqliteChunkChange(conn, ds)
                yield change
                after = before
                if change.added or change.removed:
                    conn.execute("UPDATE data_sources SET vector_version = vector_version + 1 WHERE id = ?", (ds.id,))
                    after = before + 1
            # committed: mirror the change in the ANN cache if it was in step with the database
            if after != before and index.version == before:
                index.remove(np.array(change.removed, dtype=np.int64))
                if change.added:
                    index.add(np.array(change.added, dtype=np.int64), np.concatenate(change.vectors))
                index.version = after

    def create(self, conn: Conn, ds: DataSource) -> None:
        create_fts(conn, ds)

    @contextlib.contextmanager
    def dropping(self, ds: DataSource) -> Iterator[Conn]:
        index = self.vectors.get(ds.id, ds.dim)
        with index.lock:
            with self.db.write() as conn:
                yield conn
                conn.execute(f"DROP TABLE IF EXISTS {fts_table(ds.id)}")
            self.vectors.drop(ds.id)

    @contextlib.contextmanager
    def loading(self) -> Iterator[SqliteChunkLoad]:
        """Rows in batches, FTS5 in bulk, each data source's HNSW index built alongside and saved once the load
        commits (``bulk_load.py``)."""
        from alexandria.storage.sqlite.bulk_load import HnswBuilder, SqliteChunkLoad

        builder = HnswBuilder()
        load: SqliteChunkLoad | None = None
        try:
            with self.db.write() as conn:
                load = SqliteChunkLoad(conn, self.vectors, builder)
                yield load
                load.finish()
                conn.executemany(
                    "UPDATE data_sources SET vector_version = vector_version + 1 WHERE id = ?",
                    [(ds.id,) for ds in load.data_sources],
                )
                builder.finish()  # every vector is in its index before the rows commit
                versions = {ds.id: vector_version(conn, ds.id) for ds in load.data_sources}
        except BaseException:
            builder.cancel()
            for ds in load.data_sources if load is not None else []:
                self.vectors.drop(ds.id)
            raise
        # committed: each index reflects its data source's rows; saved now, so a restart loads it as it is
        assert load is not None
        for ds, index in load.indexes():
            with index.lock:
                index.version = versions[ds.id]
                index.dirty = True
                index.save()
