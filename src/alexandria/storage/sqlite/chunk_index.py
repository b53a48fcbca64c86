"""The embedded store's chunk index: chunk rows, their FTS5 entries (one table per data source) and the usearch HNSW
cache, which mirrors each committed change when it was in step with the database (``vector_version``).

FTS5 indexes the keyword analyzer's terms (``search/analysis.py``), not the text: each chunk's entry is its terms
joined by spaces, in an FTS5 table holding its own content (so a delete finds exactly the terms that were indexed,
whatever the analyzer is now), tokenized by ``ascii``, which splits on ASCII spaces and punctuation only and so
finds exactly the analyzer's terms."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np

from alexandria.domain.models import DataSource
from alexandria.errors import StorageError
from alexandria.ingest.base import Vectors
from alexandria.search.analysis import ANALYZER_VERSION, indexed_text
from alexandria.storage.base import ChunkWrite
from alexandria.storage.chunk_index import checked_vectors
from alexandria.storage.database import Conn, Database
from alexandria.storage.keyword_reindex import Progress, log_progress, reanalyze_stale
from alexandria.storage.sqlite.db import quote_ident
from alexandria.storage.sqlite.vectors import VectorIndexes

FTS_TOKENIZER = "ascii"


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
            self.conn.execute(f"INSERT INTO {self.fts} (rowid, text) VALUES (?, ?)", (pk, indexed_text(chunk.text)))
            ids.append(pk)
        self.added += ids
        if ids:
            self.vectors.append(vecs)
        return ids

    def remove_document(self, document_pk: int) -> None:
        old = self.conn.all("SELECT id FROM chunks WHERE document_pk = ?", (document_pk,))
        self.conn.executemany(f"DELETE FROM {self.fts} WHERE rowid = ?", old)
        self.conn.execute("DELETE FROM chunks WHERE document_pk = ?", (document_pk,))
        self.removed += [int(r[0]) for r in old]


class SqliteChunkLoad:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.data_sources: list[DataSource] = []

    def add_data_source(self, ds: DataSource) -> None:
        create_fts(self.conn, ds.id)
        self.data_sources.append(ds)

    def add(self, ds: DataSource, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors) -> None:
        SqliteChunkChange(self.conn, ds).add(document_pk, chunks, vectors)  # the cache is built after the commit


def create_fts(conn: Conn, data_source_id: int) -> None:
    """The data source's FTS5 table, empty (one left by a deleted data source of this id, or by an earlier analyzer,
    dropped), recorded as built by this analyzer."""
    conn.execute(f"DROP TABLE IF EXISTS {fts_table(data_source_id)}")
    conn.execute(f"CREATE VIRTUAL TABLE {fts_table(data_source_id)} USING fts5(text, tokenize='{FTS_TOKENIZER}')")
    conn.execute("UPDATE data_sources SET keyword_analyzer = ? WHERE id = ?", (ANALYZER_VERSION, data_source_id))


class SqliteKeywordRebuild:
    """:class:`~alexandria.storage.keyword_reindex.KeywordRebuild` over FTS5: a new table, filled with the terms."""

    def start(self, conn: Conn, ds_id: int) -> None:
        create_fts(conn, ds_id)

    def add(self, conn: Conn, ds_id: int, analysed: Sequence[tuple[int, list[str]]]) -> None:
        conn.executemany(
            f"INSERT INTO {fts_table(ds_id)} (rowid, text) VALUES (?, ?)",
            [(pk, " ".join(terms)) for pk, terms in analysed],
        )

    def finish(self, conn: Conn, ds_id: int) -> None:
        """FTS5 keeps its own lengths."""


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
        create_fts(conn, ds.id)

    def reanalyze_stale(self, on_progress: Progress = log_progress) -> list[int]:
        """Rebuild the keyword index of the data sources built by another analyzer (``storage/keyword_reindex.py``)."""
        return reanalyze_stale(self.db, SqliteKeywordRebuild(), on_progress)

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
        with self.db.write() as conn:
            load = SqliteChunkLoad(conn)
            yield load
            conn.executemany(
                "UPDATE data_sources SET vector_version = vector_version + 1 WHERE id = ?",
                [(ds.id,) for ds in load.data_sources],
            )
        # committed: each loaded data source's HNSW cache, built now (so the first search finds it ready)
        for ds in load.data_sources:
            self.vectors.drop(ds.id)  # a stale cache of a deleted data source that had this id
            index = self.vectors.get(ds.id, ds.dim)
            with index.lock, self.db.snapshot() as conn:
                index.reconcile(conn.raw, ds.id, vector_version(conn, ds.id))
