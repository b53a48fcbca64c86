"""The embedded store's chunk index: chunk rows, and two caches that mirror each committed change when they were in
step with the database (``vector_version``): the tantivy keyword index and the usearch HNSW index of each data
source. A cache out of step (a crash between the commits, another process) is reconciled at its next search."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from alexandria.domain.models import DataSource
from alexandria.errors import StorageError
from alexandria.ingest.base import Vectors
from alexandria.search.analysis import ANALYZER_VERSION
from alexandria.storage.base import ChunkWrite
from alexandria.storage.chunk_index import checked_vectors
from alexandria.storage.database import Conn, Database
from alexandria.storage.keyword_reindex import Progress, log_progress, stale_data_sources
from alexandria.storage.sqlite.keyword_index import DataSourceKeywords, KeywordIndexes
from alexandria.storage.sqlite.vectors import VectorIndexes

if TYPE_CHECKING:
    from alexandria.storage.sqlite.bulk_load import SqliteChunkLoad

log = logging.getLogger(__name__)


def mark_analyzed(conn: Conn, data_source_id: int) -> None:
    """Record that the data source's keyword index is (being) built by this release's analyzer."""
    conn.execute("UPDATE data_sources SET keyword_analyzer = ? WHERE id = ?", (ANALYZER_VERSION, data_source_id))


def vector_version(conn: Conn, data_source_id: int) -> int:
    found = conn.scalar("SELECT vector_version FROM data_sources WHERE id = ?", (data_source_id,))
    if found is None:
        raise StorageError(f"data source {data_source_id} vanished")
    return int(found)


class SqliteChunkChange:
    def __init__(self, conn: Conn, ds: DataSource) -> None:
        self.conn = conn
        self.ds = ds
        self.removed: list[int] = []
        self.added: list[int] = []
        self.texts: list[tuple[int, str]] = []
        self.added_documents: list[int] = []  # the document of each added chunk
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
            self.texts.append((pk, chunk.text))
            ids.append(pk)
        self.added += ids
        self.added_documents += [document_pk] * len(ids)
        if ids:
            self.vectors.append(vecs)
        return ids

    def remove_document(self, document_pk: int) -> None:
        old = self.conn.all("SELECT id FROM chunks WHERE document_pk = ?", (document_pk,))
        self.conn.execute("DELETE FROM chunks WHERE document_pk = ?", (document_pk,))
        self.removed += [int(r[0]) for r in old]


class SqliteChunkIndex:
    vector_column = "vector"

    def __init__(self, db: Database, vectors: VectorIndexes, keywords: KeywordIndexes) -> None:
        self.db = db
        self.vectors = vectors
        self.keywords = keywords

    def stored_vector(self, value: object) -> Vectors:
        if not isinstance(value, bytes | memoryview):
            raise StorageError(f"a stored vector is a BLOB, not {type(value).__name__}")
        return np.frombuffer(value, dtype=np.float32)  # stored as float32 little-endian

    @contextlib.contextmanager
    def change(self, ds: DataSource) -> Iterator[SqliteChunkChange]:
        index = self.vectors.get(ds.id, ds.dim)
        keywords = self.keywords.get(ds.id)
        with index.lock, keywords.lock:  # a search seeing the new version waits for the mirrors, not reconciles
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
                    index.add(
                        np.array(change.added, dtype=np.int64),
                        np.concatenate(change.vectors),
                        np.array(change.added_documents, dtype=np.int64),
                    )
                index.version = after
            if after != before and keywords.version == before:
                self._mirror_keywords(keywords, ds, change, after)

    def _mirror_keywords(
        self, keywords: DataSourceKeywords, ds: DataSource, change: SqliteChunkChange, after: int
    ) -> None:
        try:
            keywords.apply(change.removed, change.texts, after)  # committed before the next search reads it
        except Exception:  # the database committed: the index is out of step, reconciled at its next search
            log.exception("keyword index of data source %d left out of step", ds.id)

    def create(self, conn: Conn, ds: DataSource) -> None:
        self.keywords.drop(ds.id)  # left by a deleted data source of this id
        self.keywords.get(ds.id).start(vector_version(conn, ds.id))  # empty and in step: later changes are mirrored
        mark_analyzed(conn, ds.id)

    def reanalyze_stale(self, on_progress: Progress = log_progress) -> list[int]:
        """Rebuild the keyword index of every data source built by another analyzer (``storage/keyword_reindex.py``
        says how stale ones are found): its chunks' texts re-analysed into a new tantivy index, then the data source
        marked. A crash in between leaves it unmarked, so the next open rebuilds it again."""
        done: list[int] = []
        for ds_id in stale_data_sources(self.db):
            index = self.keywords.get(ds_id)
            with self.db.snapshot() as conn:
                version = vector_version(conn, ds_id)
                total = int(conn.scalar("SELECT count(*) FROM chunks WHERE data_source_id = ?", (ds_id,)))
                on_progress(ds_id, 0, total)
                rows = conn.raw.execute("SELECT id, text FROM chunks WHERE data_source_id = ?", (ds_id,))
                count = index.rebuild(((int(r[0]), str(r[1])) for r in rows), version)
            with self.db.write() as conn:
                mark_analyzed(conn, ds_id)
            on_progress(ds_id, count, total)
            done.append(ds_id)
        return done

    @contextlib.contextmanager
    def dropping(self, ds: DataSource) -> Iterator[Conn]:
        index = self.vectors.get(ds.id, ds.dim)
        with index.lock:
            with self.db.write() as conn:
                yield conn
            self.vectors.drop(ds.id)
            self.keywords.drop(ds.id)

    @contextlib.contextmanager
    def loading(self) -> Iterator[SqliteChunkLoad]:
        """Rows in batches; each data source's HNSW index and tantivy keyword index built alongside
        (``bulk_load.py``), the keyword index committed in one commit once the load has, then the HNSW index saved."""
        from alexandria.storage.sqlite.bulk_load import HnswBuilder, SqliteChunkLoad

        builder = HnswBuilder()
        load: SqliteChunkLoad | None = None
        try:
            with self.db.write() as conn:
                load = SqliteChunkLoad(conn, self.vectors, self.keywords, builder)
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
            if load is not None:
                load.abandon()
                for ds in load.data_sources:
                    self.vectors.drop(ds.id)
                    self.keywords.drop(ds.id)
            raise
        # committed: each index reflects its data source's rows; committed and saved now, so the first search, or a
        # restart, finds them as they are (a crash before leaves them out of step: rebuilt from the rows)
        try:
            for ds, index, keywords in load.indexes():
                try:
                    keywords.commit(versions[ds.id])
                except Exception:  # the rows committed: the index is out of step, reconciled at its next search
                    log.exception("keyword index of data source %d left out of step", ds.id)
                with index.lock:
                    index.version = versions[ds.id]
                    index.dirty = True
                    index.save()
        finally:
            load.abandon()  # those not committed (an error above): their writers let go of the directories
