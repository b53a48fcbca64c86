"""Bulk loading into the embedded store (``alexandria import``): rows in large batches, each loaded data source's
HNSW index built once, on a thread of its own while the rows are written, then saved to the data directory, and its
tantivy keyword index fed during the load and committed in one commit after the load's.

Per-row index maintenance is what made a load slow: one ``INSERT ... RETURNING`` per chunk, and an HNSW index built
only after the commit, from vectors read back from the database. Here:

* chunk ids are assigned by the load (the next ids after ``sqlite_sequence``'s, inside the write transaction that
  holds the only writer), so chunks go in with one ``executemany`` per batch;
* the vectors of each batch go to :class:`HnswBuilder`, whose thread adds them to the data source's new usearch index
  (``add`` releases the GIL and uses every core), so building the graph overlaps parsing and writing the rows;
* each document's chunks go to the data source's :class:`~alexandria.storage.sqlite.keyword_index.KeywordBuild`
  (a tantivy writer replacing the whole index): their texts are analysed on the loading thread while the builder's
  thread adds vectors, and nothing is visible until the build commits;
* when the transaction commits, each keyword build commits (one tantivy commit per data source) and each HNSW index
  records the data source's ``vector_version`` and is saved beside the database (``SqliteChunkIndex.loading``), so
  the first search after the load, or after a restart, finds both ready; the data source is marked as analysed by
  this release's analyzer in the load's transaction.

Crashes: the rows are one transaction, and index files are committed or written only after it commits. A process
killed during the load leaves neither rows nor index files of the loaded data sources (stale files of a deleted data
source that had the same id are removed before the load starts); one killed after the commit but before the saves
leaves rows without an index file or with an empty keyword index, which are rebuilt from the rows (``vectors.py``,
``keyword_index.py``: a missing or out-of-step index is reconciled with the database).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from alexandria.domain.models import DataSource
from alexandria.errors import StorageError
from alexandria.ingest.base import Vectors
from alexandria.storage.base import ChunkWrite
from alexandria.storage.chunk_index import checked_vectors
from alexandria.storage.database import Conn
from alexandria.storage.sqlite.chunk_index import mark_analyzed
from alexandria.storage.sqlite.keyword_index import KeywordBuild, KeywordIndexes
from alexandria.storage.sqlite.vectors import DataSourceIndex, IdArray, VectorIndexes

#: chunks written per batch, and vectors handed to the HNSW builder at once
BATCH = 4096
#: batches of vectors waiting for the builder: bounds the load's memory when the graph is slower than the rows
QUEUED_BATCHES = 4


class HnswBuilder:
    """Adds vectors to HNSW indexes on a thread of its own, in the order given; errors surface in :meth:`finish`."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[DataSourceIndex, IdArray, Vectors, IdArray] | None] = queue.Queue(QUEUED_BATCHES)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="hnsw-bulk-build", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None or self._cancelled:
                continue
            index, ids, vectors, documents = item
            try:
                with index.lock:
                    index.add(ids, vectors, documents)
            except BaseException as exc:  # reported by finish(), in the loading thread
                self._error = exc

    def add(self, index: DataSourceIndex, ids: IdArray, vectors: Vectors, documents: IdArray) -> None:
        """Add chunks ``ids`` (of the documents ``documents``, one per id) with their vectors."""
        if self._error is not None:
            raise StorageError(f"building the vector index failed: {self._error}") from self._error
        self._queue.put((index, ids, vectors, documents))

    def finish(self) -> None:
        """Wait until every vector given is in its index."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise StorageError(f"building the vector index failed: {self._error}") from self._error

    def cancel(self) -> None:
        """Stop building (the load failed): what is queued is dropped."""
        self._cancelled = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


@dataclass
class _Pending:
    """A data source's indexes being built: its keyword build, and its HNSW index with the loaded chunks not yet
    handed to the builder."""

    index: DataSourceIndex
    keywords: KeywordBuild
    ids: list[IdArray] = field(default_factory=list)
    vectors: list[Vectors] = field(default_factory=list)
    documents: list[IdArray] = field(default_factory=list)
    count: int = 0


class SqliteChunkLoad:
    """The :class:`~alexandria.storage.chunk_index.ChunkLoad` of the embedded store (see the module's docstring)."""

    def __init__(self, conn: Conn, vectors: VectorIndexes, keywords: KeywordIndexes, builder: HnswBuilder) -> None:
        self.conn = conn
        self.vectors = vectors
        self.keywords = keywords
        self.builder = builder
        self.data_sources: list[DataSource] = []
        self.pending: dict[int, _Pending] = {}
        self.rows: list[tuple[object, ...]] = []
        seq = conn.scalar("SELECT seq FROM sqlite_sequence WHERE name = 'chunks'")
        self.next_id = int(seq or 0) + 1

    def add_data_source(self, ds: DataSource) -> None:
        mark_analyzed(self.conn, ds.id)  # its keyword index is built by this analyzer once the load commits
        # index files left by a deleted data source of this id, removed before anything of this load can be saved
        self.vectors.drop(ds.id)
        self.keywords.drop(ds.id)
        self.pending[ds.id] = _Pending(self.vectors.get(ds.id, ds.dim), self.keywords.get(ds.id).building())
        self.data_sources.append(ds)

    def add(self, ds: DataSource, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors) -> None:
        pending = self.pending.get(ds.id)
        if pending is None:
            raise StorageError(f"data source {ds.id} is not being loaded")
        vecs = checked_vectors(ds, chunks, vectors)
        if not chunks:
            return
        first = self.next_id
        self.next_id += len(chunks)
        for pk, chunk, vec in zip(range(first, self.next_id), chunks, vecs, strict=True):
            self.rows.append((pk, ds.id, document_pk, chunk.offset, chunk.text, chunk.hash, chunk.token_count,
                              vec.tobytes(), chunk.segment_pk, chunk.child_pk))  # fmt: skip
        pending.ids.append(np.arange(first, self.next_id, dtype=np.int64))
        pending.vectors.append(vecs)
        pending.documents.append(np.full(len(chunks), document_pk, dtype=np.int64))
        pending.count += len(chunks)
        if pending.count >= BATCH:
            self._build(pending)
        # analysed here (Python, this thread) while the builder's thread adds vectors (usearch, without the GIL)
        pending.keywords.add(zip(range(first, self.next_id), (chunk.text for chunk in chunks), strict=True))
        if len(self.rows) >= BATCH:
            self._write()

    def _build(self, pending: _Pending) -> None:
        if pending.count:
            self.builder.add(
                pending.index,
                np.concatenate(pending.ids),
                np.concatenate(pending.vectors),
                np.concatenate(pending.documents),
            )
            pending.ids, pending.vectors, pending.documents, pending.count = [], [], [], 0

    def _write(self) -> None:
        if self.rows:
            self.conn.executemany(
                "INSERT INTO chunks (id, data_source_id, document_pk, chunk_offset, text, hash, token_count, vector, "
                "segment_pk, child_pk) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self.rows,
            )
        self.rows = []

    def finish(self) -> None:
        """The last batch of rows and vectors (the caller then waits for the builder and commits)."""
        self._write()
        for pending in self.pending.values():
            self._build(pending)

    def indexes(self) -> list[tuple[DataSource, DataSourceIndex, KeywordBuild]]:
        """Each loaded data source with its HNSW index and its keyword build (committed by the caller)."""
        return [(ds, self.pending[ds.id].index, self.pending[ds.id].keywords) for ds in self.data_sources]

    def abandon(self) -> None:
        """Drop the keyword builds not committed (the load failed, or stopped after its commit)."""
        for pending in self.pending.values():
            pending.keywords.abandon()
