"""The ANN cache of the embedded store: one usearch HNSW index per data source, persisted beside the database.

The database is the source of truth (every chunk row carries its vector). An index file is a cache: it records the
data source's ``vector_version`` it reflects, and whenever that differs from the database (a crash, another process
wrote, a file is missing or corrupt) the index is reconciled by id set difference: chunk ids are never reused, so
"ids in the database but not the index" are added and "ids in the index but not the database" are removed.

Beside each index, the same vectors as an exact matrix (:mod:`~alexandria.storage.sqlite.vector_matrix`), kept in step
by every add and remove here, for scoring a subset of the data source's chunks without reading rows. A matrix whose
files are missing or out of step with the index is rebuilt from the database at the next reconcile.

Since the matrix holds every vector exactly, the HNSW graph keeps its own copy in reduced precision
(``INDEX_DTYPE``): it only has to find the candidates, and every result it returns is scored again from the matrix, so
the scores a search returns are the exact cosines and its order is theirs. An index saved in another precision (an
older data directory's f32 files) is converted when it is loaded: rebuilt from the matrix when that is in step,
otherwise discarded and rebuilt from the database by the next reconcile (the database holds every vector).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

# onnxruntime must be loaded before usearch: the other order segfaults inside onnxruntime's import (usearch 2.26 /
# numkong with onnxruntime 1.32). Every process that has the store can embed, so load it here, first.
import onnxruntime  # noqa: F401
from usearch.index import Index

from alexandria.ingest.base import Vectors
from alexandria.search.ann import hnsw_ef
from alexandria.storage.sqlite.vector_matrix import VectorMatrix

log = logging.getLogger(__name__)

IdArray = npt.NDArray[np.int64]


#: The precision of the vectors inside the HNSW graph (usearch's ``dtype``; the exact f32 vectors are the matrix's).
#: Measured with `bench/ann_dtype.py` (the scale benchmark's clustered MiniLM-like 384-d vectors, 200 real SciFact
#: queries, recall@10 against exact, every result rescored exactly; load average 5-11 on 2 shared cores), the process
#: RSS an index adds is ~1.7 kB a vector in f32, ~1.0 kB in f16 and ~0.6 kB in i8; at the ef the rule picks
#: (338 at 100k, 729 at 300k) f32 reaches 0.9895 / 0.983, f16 0.9905 / 0.9825, i8 0.89 / 0.871 taking k results,
#: 0.989 / 0.9805 rescoring 3k, and 0.990 / 0.986 with its ef 1.2 times wider too, still about twice as fast as f32
#: (0.84 ms against 1.5 ms, 1.72 ms against 3.0 ms p50). i8, for the memory: at 1M vectors the graph takes
#: ~0.6 GB instead of f32's ~1.7 GB (f16 ~1.0 GB), next to the matrix's 1.5 GB.
INDEX_DTYPE = "i8"
#: a top-``k`` search takes up to ``2 k`` more results from HNSW (at most this many more) and keeps the ``k`` best by
#: exact score: i8's coarse distances misorder the graph's results near the k-th. A filtered search's deep fetch
#: (``search/ann.py``) keeps the few it needs well inside its own.
RESCORE_EXTRA = 100
#: how much wider than ``search/ann.py``'s rule an index in this precision searches, for f32's recall (see above)
EF_FACTOR = {"f32": 1.0, "f16": 1.0, "i8": 1.2}
#: vectors added at once while converting an index to ``INDEX_DTYPE`` (progress is logged after each)
CONVERT_BATCH = 50_000


@dataclass(frozen=True)
class HnswParams:
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 128
    dtype: str = INDEX_DTYPE  # the precision of the graph's vectors (f32, f16, i8)


def vectors_from_blobs(blobs: list[bytes], dim: int) -> Vectors:
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)


class DataSourceIndex:
    """The HNSW index of one data source and the ``vector_version`` it reflects."""

    def __init__(self, path: Path, dim: int, params: HnswParams) -> None:
        self.path = path
        self.meta_path = path.with_suffix(".json")
        self.dim = dim
        self.params = params
        self.lock = threading.RLock()
        self.version = -1
        self.dirty = False
        self.index = self._new()
        self.matrix = VectorMatrix(path.with_suffix(".f32.npy"), dim)
        self.matrix_ok = True  # the matrix holds exactly the index's vectors (else rebuilt by ``reconcile``)

    def _new(self) -> Index:
        return Index(
            ndim=self.dim,
            metric="ip",
            dtype=self.params.dtype,
            connectivity=self.params.connectivity,
            expansion_add=self.params.expansion_add,
            expansion_search=self.params.expansion_search,
        )

    def load(self) -> None:
        if not (self.path.exists() and self.meta_path.exists()):
            return
        saved_dtype = self.params.dtype
        count = 0  # the vectors of a saved index in another precision
        try:
            meta = json.loads(self.meta_path.read_text())
            saved = Index.metadata(str(self.path))
            if saved is None:
                raise ValueError("not a usearch index")
            if int(meta["dim"]) != self.dim or int(saved["dimensions"]) != self.dim:
                raise ValueError("dimension mismatch")
            saved_dtype = _dtype_name(saved["kind_scalar"])
            self.version = int(meta["version"])
            if saved_dtype == self.params.dtype:
                index = self._new()
                index.load(str(self.path))
                self.index = index
            else:  # converted below, the saved file not even read
                count = int(saved["count_present"])
        except Exception as exc:  # a corrupt cache is rebuilt from the database
            log.warning("discarding vector index %s: %s", self.path, exc)
            self.index = self._new()
            self.version = -1
            saved_dtype = self.params.dtype
        expected = len(self.index) if saved_dtype == self.params.dtype else count
        self.matrix_ok = self.matrix.load(self.version) and len(self.matrix) == expected
        if not self.matrix_ok:
            self.matrix.clear()
        if saved_dtype != self.params.dtype:
            self._convert(saved_dtype)

    def _convert(self, saved_dtype: str) -> None:
        """The graph afresh in ``params.dtype`` from the exact matrix (when it is in step with the saved index), or
        left empty for the next reconcile to rebuild from the database."""
        self.index = self._new()
        if not self.matrix_ok:
            log.warning("vector index %s is %s and its matrix is out of step: rebuilt from the database", self.path,
                        saved_dtype)  # fmt: skip
            self.version = -1
            return
        rows = self.matrix.live()
        log.warning("converting vector index %s from %s to %s (%d vectors)", self.path, saved_dtype,
                    self.params.dtype, len(rows))  # fmt: skip
        for start in range(0, len(rows), CONVERT_BATCH):
            ids, vectors = self.matrix.vectors(rows[start : start + CONVERT_BATCH])
            self.index.add(ids, vectors, threads=0)
            log.info("converting vector index %s: %d/%d", self.path, min(start + CONVERT_BATCH, len(rows)), len(rows))
        self.dirty = True  # the next save replaces the old file

    def save(self) -> None:
        with self.lock:
            if not self.dirty:
                return
            tmp = self.path.with_suffix(".tmp")
            self.index.save(str(tmp))
            tmp.replace(self.path)
            if self.matrix_ok:
                self.matrix.save(self.version)
            self.meta_path.write_text(json.dumps({"version": self.version, "dim": self.dim}))
            self.dirty = False

    def add(self, ids: IdArray, vectors: Vectors, documents: IdArray) -> None:
        """Add chunks ``ids`` (of the documents ``documents``, one per id) with their vectors."""
        if len(ids):
            self.index.add(ids, vectors, threads=0)
            if self.matrix_ok:
                self.matrix.add(ids, vectors, documents)
            self.dirty = True

    def remove(self, ids: IdArray) -> None:
        if len(ids):
            self.index.remove(ids)
            if self.matrix_ok:
                self.matrix.remove(ids)
            self.dirty = True

    def __len__(self) -> int:
        return len(self.index)

    def search(self, query: Vectors, k: int, ef: int | None = None) -> tuple[IdArray, npt.NDArray[np.float32]]:
        """Top-``k`` ids by exact inner product (cosine for unit vectors), best first (ties by id), with those
        scores: HNSW's ``k`` best and up to ``RESCORE_EXTRA`` more (``ef`` by default from the size, times the
        precision's ``EF_FACTOR``) scored again from the exact matrix, which holds every vector the index does (the
        caller keeps it in step, under its lock)."""
        size = len(self.index)
        k = min(k, size)
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        fetch = min(size, k + min(2 * k, RESCORE_EXTRA))
        if ef is None:
            ef = hnsw_ef(self.params.expansion_search, k, size)
        wide = math.ceil(ef * EF_FACTOR.get(self.params.dtype, 1.0))
        # per search, under the caller's lock on this index; usearch has the setter, its type annotation hides it
        self.index.expansion_search = max(wide, fetch)  # type: ignore[misc]
        found = np.asarray(self.index.search(query, fetch).keys, dtype=np.int64)
        ids, scores = self.matrix.scored(self.matrix.rows_of(found), np.asarray(query, dtype=np.float32).reshape(-1))
        best = np.lexsort((ids, -scores))[:k]
        return ids[best], scores[best]

    def reconcile(self, conn: sqlite3.Connection, data_source_id: int, db_version: int) -> tuple[int, int]:
        """Bring the index (and its matrix) in line with the database's chunks; returns ``(added, removed)``."""
        db_ids = np.fromiter(
            (r[0] for r in conn.execute("SELECT id FROM chunks WHERE data_source_id = ?", (data_source_id,))),
            dtype=np.int64,
        )
        index_ids = np.asarray(self.index.keys, dtype=np.int64) if len(self.index) else np.zeros(0, np.int64)
        missing = np.setdiff1d(db_ids, index_ids, assume_unique=True)
        extra = np.setdiff1d(index_ids, db_ids, assume_unique=True)
        self.remove(extra)
        batch = 4096
        for start in range(0, len(missing), batch):
            part = missing[start : start + batch].tolist()
            marks = ",".join("?" * len(part))
            rows = conn.execute(f"SELECT id, vector, document_pk FROM chunks WHERE id IN ({marks})", part).fetchall()
            self.add(
                np.array([r[0] for r in rows], dtype=np.int64),
                vectors_from_blobs([r[1] for r in rows], self.dim),
                np.array([r[2] for r in rows], dtype=np.int64),
            )
        if not self.matrix_ok:
            self._rebuild_matrix(conn, data_source_id)
        self.version = db_version
        self.dirty = True
        return len(missing), len(extra)

    def _rebuild_matrix(self, conn: sqlite3.Connection, data_source_id: int) -> None:
        """The matrix afresh from the database's rows (which the index now holds, after a reconcile)."""
        self.matrix.clear()
        cur = conn.execute(
            "SELECT id, vector, document_pk FROM chunks WHERE data_source_id = ? ORDER BY id", (data_source_id,)
        )
        while rows := cur.fetchmany(8192):
            self.matrix.add(
                np.array([r[0] for r in rows], dtype=np.int64),
                vectors_from_blobs([r[1] for r in rows], self.dim),
                np.array([r[2] for r in rows], dtype=np.int64),
            )
        self.matrix_ok = True


def _dtype_name(kind: object) -> str:
    """usearch's scalar kind (``ScalarKind.F16``) as its ``dtype`` name (``f16``)."""
    return str(getattr(kind, "name", kind)).lower()


class VectorIndexes:
    """All data sources' HNSW indexes of one data directory, loaded lazily."""

    def __init__(self, directory: Path, params: HnswParams) -> None:
        self.directory = directory
        self.params = params
        directory.mkdir(parents=True, exist_ok=True)
        self._indexes: dict[int, DataSourceIndex] = {}
        self._lock = threading.Lock()

    def get(self, data_source_id: int, dim: int) -> DataSourceIndex:
        """The data source's index, loaded on first use under its own lock (every user of an index takes it), so
        that loading one (converting an older f32 index takes minutes at a million vectors) holds up no other."""
        with self._lock:
            idx = self._indexes.get(data_source_id)
            if idx is not None:
                return idx
            idx = DataSourceIndex(self.directory / f"ds_{data_source_id}.usearch", dim, self.params)
            idx.lock.acquire()
            self._indexes[data_source_id] = idx
        try:
            idx.load()
        except BaseException:
            with self._lock:
                if self._indexes.get(data_source_id) is idx:
                    del self._indexes[data_source_id]
            raise
        finally:
            idx.lock.release()
        return idx

    def save_all(self) -> None:
        with self._lock:
            indexes = list(self._indexes.values())
        for idx in indexes:
            idx.save()

    def drop(self, data_source_id: int) -> None:
        """Forget a deleted data source's index and remove its files."""
        with self._lock:
            idx = self._indexes.pop(data_source_id, None)
        path = self.directory / f"ds_{data_source_id}.usearch"
        for p in (path, path.with_suffix(".json"), path.with_suffix(".tmp")):
            p.unlink(missing_ok=True)
        VectorMatrix(path.with_suffix(".f32.npy"), 1).delete_files()
        if idx is not None:
            idx.dirty = False
