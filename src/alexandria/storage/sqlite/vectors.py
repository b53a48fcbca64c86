"""The ANN cache of the embedded store: one usearch HNSW index per data source, persisted beside the database.

The database is the source of truth (every chunk row carries its vector). An index file is a cache: it records the
data source's ``vector_version`` it reflects, and whenever that differs from the database (a crash, another process
wrote, a file is missing or corrupt) the index is reconciled by id set difference: chunk ids are never reused, so
"ids in the database but not the index" are added and "ids in the index but not the database" are removed.

Beside each index, the same vectors as an exact matrix (:mod:`~alexandria.storage.sqlite.vector_matrix`), kept in step
by every add and remove here, for scoring a subset of the data source's chunks without reading rows. A matrix whose
files are missing or out of step with the index is rebuilt from the database at the next reconcile.
"""

from __future__ import annotations

import json
import logging
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


@dataclass(frozen=True)
class HnswParams:
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 128


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
            dtype="f32",
            connectivity=self.params.connectivity,
            expansion_add=self.params.expansion_add,
            expansion_search=self.params.expansion_search,
        )

    def load(self) -> None:
        if not (self.path.exists() and self.meta_path.exists()):
            return
        try:
            meta = json.loads(self.meta_path.read_text())
            index = self._new()
            index.load(str(self.path))
            if int(meta["dim"]) != self.dim or index.ndim != self.dim:
                raise ValueError("dimension mismatch")
            self.index = index
            self.version = int(meta["version"])
        except Exception as exc:  # a corrupt cache is rebuilt from the database
            log.warning("discarding vector index %s: %s", self.path, exc)
            self.index = self._new()
            self.version = -1
        self.matrix_ok = self.matrix.load(self.version) and len(self.matrix) == len(self.index)
        if not self.matrix_ok:
            self.matrix.clear()

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
        """Top-``k`` ids by inner product, with scores (cosine for unit vectors); ``ef`` by default from the size."""
        k = min(k, len(self.index))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if ef is None:
            ef = hnsw_ef(self.params.expansion_search, k, len(self.index))
        # per search, under the caller's lock on this index; usearch has the setter, its type annotation hides it
        self.index.expansion_search = max(ef, k)  # type: ignore[misc]
        matches = self.index.search(query, k)
        ids = np.asarray(matches.keys, dtype=np.int64)
        scores = (1.0 - np.asarray(matches.distances, dtype=np.float32)).astype(np.float32)
        return ids, scores

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


class VectorIndexes:
    """All data sources' HNSW indexes of one data directory, loaded lazily."""

    def __init__(self, directory: Path, params: HnswParams) -> None:
        self.directory = directory
        self.params = params
        directory.mkdir(parents=True, exist_ok=True)
        self._indexes: dict[int, DataSourceIndex] = {}
        self._lock = threading.Lock()

    def get(self, data_source_id: int, dim: int) -> DataSourceIndex:
        with self._lock:
            idx = self._indexes.get(data_source_id)
            if idx is None:
                idx = DataSourceIndex(self.directory / f"ds_{data_source_id}.usearch", dim, self.params)
                idx.load()
                self._indexes[data_source_id] = idx
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
