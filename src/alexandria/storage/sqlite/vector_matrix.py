"""The exact vectors of one data source as a float32 matrix (memory-mapped from the data directory until it changes),
for scoring a subset of its chunks in microseconds (a filtered search's candidates, hybrid's keyword hits) instead of
reading rows.

One row per chunk the data source's HNSW index holds, with the chunk's id and its document's id beside it; kept in
step by :class:`~alexandria.storage.sqlite.vectors.DataSourceIndex` (every add and remove of the index goes through
here too). Lookups by chunk id binary-search a sorted copy of the ids; by document the same over the documents' ids
(a document's chunks are the rows its id maps to). Removed rows are tombstoned and the matrix is compacted when they
reach a quarter of it.

Files (a cache like the index, beside it): ``ds_<id>.f32.npy`` (the rows) and ``ds_<id>.slots.npz`` (ids, documents
and liveness per row, and the index ``version`` they match), both replaced whole on save (so processes sharing the
data directory never write into each other's mapping). Loaded read-only and mapped, so a server that only searches
shares the pages with the OS's cache; the first change copies the matrix into memory, with spare capacity.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

IdArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

MIN_CAPACITY = 1024
_GENERATIONS = itertools.count(1)


class VectorMatrix:
    def __init__(self, path: Path, dim: int) -> None:
        self.path = path  # ds_<id>.f32.npy
        self.slots_path = path.with_name(path.name.replace(".f32.npy", ".slots.npz"))
        self.dim = dim
        self.rows = 0  # rows in use (live and tombstoned)
        self.keys = np.zeros(0, dtype=np.int64)  # chunk id per row
        self.docs = np.zeros(0, dtype=np.int64)  # document id per row
        self.alive = np.zeros(0, dtype=bool)
        self.dead = 0
        self._mat: FloatArray = np.zeros((0, dim), dtype=np.float32)
        self._mapped = False  # _mat is the read-only mapping of the file
        self._by_key: tuple[IdArray, IdArray] | None = None  # sorted ids, their rows (live rows only)
        self._by_doc: tuple[IdArray, IdArray] | None = None  # sorted documents, their rows (live rows only)
        # a process-wide unique stamp, new whenever rows are added, removed, renumbered or reloaded
        self.generation = next(_GENERATIONS)

    # -- persistence -------------------------------------------------------------------------------------------

    def load(self, version: int) -> bool:
        """Take the files if they match the index's ``version``; False (and empty) otherwise."""
        self.clear()
        if not (self.path.exists() and self.slots_path.exists()):
            return False
        try:
            with np.load(self.slots_path) as saved:
                if int(saved["version"]) != version or int(saved["dim"]) != self.dim:
                    return False
                keys, docs, alive = saved["keys"], saved["docs"], saved["alive"]
            mat = np.load(self.path, mmap_mode="r")
            if mat.dtype != np.float32 or mat.shape != (len(keys), self.dim):
                return False
            self._mat, self._mapped = mat, True
            self.keys, self.docs, self.alive = keys.astype(np.int64), docs.astype(np.int64), alive.astype(bool)
            self.rows = len(keys)
            self.dead = int(len(keys) - int(self.alive.sum()))
            return True
        except Exception as exc:  # a corrupt cache is rebuilt
            log.warning("discarding vector matrix %s: %s", self.path, exc)
            self.clear()
            return False

    def save(self, version: int) -> None:
        """Write the matrix and its slots (each to a temporary file, then renamed over the old one)."""
        tmp = self.path.with_name(self.path.name + ".tmp.npy")
        np.save(tmp, self._mat[: self.rows])
        tmp.replace(self.path)
        tmp_slots = self.slots_path.with_name(self.slots_path.name + ".tmp.npz")
        np.savez(tmp_slots, version=np.int64(version), dim=np.int64(self.dim), keys=self.keys[: self.rows],
                 docs=self.docs[: self.rows], alive=self.alive[: self.rows])  # fmt: skip
        tmp_slots.replace(self.slots_path)

    def clear(self) -> None:
        self.rows, self.dead = 0, 0
        self.keys = np.zeros(0, dtype=np.int64)
        self.docs = np.zeros(0, dtype=np.int64)
        self.alive = np.zeros(0, dtype=bool)
        self._mat, self._mapped = np.zeros((0, self.dim), dtype=np.float32), False
        self._by_key = self._by_doc = None
        self.generation = next(_GENERATIONS)

    def delete_files(self) -> None:
        self.clear()
        for p in (self.path, self.slots_path):
            p.unlink(missing_ok=True)

    def _writable(self, need: int) -> None:
        """Room for ``need`` rows in memory (the mapping copied out on the first change)."""
        if not self._mapped and need <= len(self._mat):
            return
        capacity = max(MIN_CAPACITY, need, len(self._mat) * 2) if need > len(self._mat) else len(self._mat)
        mat = np.empty((capacity, self.dim), dtype=np.float32)
        mat[: self.rows] = self._mat[: self.rows]
        self._mat, self._mapped = mat, False

    # -- changes (under the index's lock) ----------------------------------------------------------------------

    def add(self, ids: IdArray, vectors: FloatArray, docs: IdArray) -> None:
        n = len(ids)
        if n == 0:
            return
        self._writable(self.rows + n)
        self._mat[self.rows : self.rows + n] = vectors
        self.keys = np.concatenate([self.keys[: self.rows], ids.astype(np.int64)])
        self.docs = np.concatenate([self.docs[: self.rows], docs.astype(np.int64)])
        self.alive = np.concatenate([self.alive[: self.rows], np.ones(n, dtype=bool)])
        self.rows += n
        self._by_key = self._by_doc = None
        self.generation = next(_GENERATIONS)

    def remove(self, ids: IdArray) -> None:
        rows = self.rows_of(ids)
        if len(rows) == 0:
            return
        self.alive[rows] = False
        self.dead += len(rows)
        self._by_key = self._by_doc = None
        self.generation = next(_GENERATIONS)
        if self.dead >= max(MIN_CAPACITY, self.rows // 4):
            self._compact()

    def _compact(self) -> None:
        keep = np.flatnonzero(self.alive[: self.rows])
        self._mat = np.ascontiguousarray(self._mat[keep])
        self._mapped = False
        self.keys, self.docs = self.keys[keep], self.docs[keep]
        self.alive = np.ones(len(keep), dtype=bool)
        self.rows, self.dead = len(keep), 0
        self._by_key = self._by_doc = None
        self.generation = next(_GENERATIONS)

    # -- lookups -----------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.rows - self.dead

    def _sorted(self, values: IdArray) -> tuple[IdArray, IdArray]:
        live = np.flatnonzero(self.alive[: self.rows])
        order = np.argsort(values[live], kind="stable")
        return values[live][order], live[order]

    def rows_of(self, ids: IdArray) -> IdArray:
        """The live rows of the chunks ``ids`` (those the matrix holds, in the order given)."""
        if self._by_key is None:
            self._by_key = self._sorted(self.keys[: self.rows])
        keys, rows = self._by_key
        if len(keys) == 0 or len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
        found: IdArray = rows[pos[keys[pos] == ids]]
        return found

    def rows_of_documents(self, documents: IdArray) -> IdArray:
        """The live rows of every chunk of the given documents."""
        if self._by_doc is None:
            self._by_doc = self._sorted(self.docs[: self.rows])
        docs, rows = self._by_doc
        documents = np.unique(documents)
        lo = np.searchsorted(docs, documents, side="left")
        hi = np.searchsorted(docs, documents, side="right")
        counts = hi - lo
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        # the concatenation of the ranges [lo, hi): each range's start, repeated, plus the position inside it
        starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        return rows[starts + np.arange(total)]

    def documents_of(self, ids: IdArray) -> IdArray:
        """The document of each chunk id (-1 for ids the matrix does not hold)."""
        if self._by_key is None:
            self._by_key = self._sorted(self.keys[: self.rows])
        keys, rows = self._by_key
        if len(keys) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(keys, ids), len(keys) - 1)
        return np.where(keys[pos] == ids, self.docs[rows[pos]], -1)

    def live(self) -> IdArray:
        """The live rows, in storage order."""
        return np.flatnonzero(self.alive[: self.rows])

    def vectors(self, rows: IdArray) -> tuple[IdArray, FloatArray]:
        """The chunk ids and the vectors of the given rows."""
        return self.keys[rows], np.ascontiguousarray(self._mat[rows])

    def scored(self, rows: IdArray, query: FloatArray) -> tuple[IdArray, FloatArray]:
        """The chunk ids of the given rows and their inner products with the query (cosines for unit vectors)."""
        rows = np.sort(rows)  # read in storage order
        if len(rows) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores: FloatArray = self._mat[rows] @ query
        return self.keys[rows], scores

    def top(self, rows: IdArray, query: FloatArray, k: int) -> tuple[IdArray, FloatArray]:
        """The ``k`` best of the given rows by inner product, best first (ties by chunk id): ids and scores."""
        ids, scores = self.scored(rows, query)
        if len(ids) > k:  # the k best and every row tied with the k-th, so that ties go by id, not by row order
            kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
            keep = np.flatnonzero(scores >= kth)
            ids, scores = ids[keep], scores[keep]
        order = np.lexsort((ids, -scores))[:k]
        return ids[order], scores[order]
