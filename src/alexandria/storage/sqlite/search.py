"""Keyword (tantivy BM25) and vector (HNSW or exact) search for the SQLite store, with filters compiled to SQL.

A filtered vector search asks SQL only for the documents that pass the filter; their chunks' rows in the data
source's exact matrix are a binary search away, and ``search/ann.py``'s plan says whether to score them all (one
gathered matrix product) or to search HNSW oversampled and keep the hits whose document passed."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.domain.models import DataSource
from alexandria.ingest.base import Vectors
from alexandria.search.analysis import query_terms
from alexandria.search.ann import filtered_plan, unfiltered_plan, widened
from alexandria.storage.base import ScoredId
from alexandria.storage.sqlite.db import SqliteEngine
from alexandria.storage.sqlite.filter_memo import FilterMemo
from alexandria.storage.sqlite.keyword_index import DataSourceKeywords, KeywordIndexes
from alexandria.storage.sqlite.metadata_sql import compile_metadata_filter
from alexandria.storage.sqlite.vectors import DataSourceIndex, VectorIndexes

log = logging.getLogger(__name__)


def _in_list(column: str, values: tuple[str, ...], table: str, negate: bool, params: list[object]) -> str:
    if not values:
        return "1" if negate else "0"
    params.append(json.dumps(list(values)))
    op = "NOT IN" if negate else "IN"
    key = "tag" if table == "document_tags" else "parent"
    return f"{column} {op} (SELECT document_pk FROM {table} WHERE {key} IN (SELECT value FROM json_each(?)))"


def compile_filter(flt: DocumentFilter, doc: str, params: list[object]) -> list[str]:
    """SQL conditions over the documents alias ``doc`` (parameters appended to ``params``)."""
    col = f"{doc}.id"
    conds: list[str] = []
    if flt.tags_in is not None:
        conds.append(_in_list(col, flt.tags_in, "document_tags", False, params))
    if flt.tags_not is not None:
        conds.append(_in_list(col, flt.tags_not, "document_tags", True, params))
    if flt.parents_in is not None:
        conds.append(_in_list(col, flt.parents_in, "document_parents", False, params))
    if flt.parents_not is not None:
        conds.append(_in_list(col, flt.parents_not, "document_parents", True, params))
    if flt.timestamp_gt is not None:
        conds.append(f"{doc}.timestamp >= ?")
        params.append(flt.timestamp_gt)
    if flt.timestamp_lt is not None:
        conds.append(f"{doc}.timestamp <= ?")
        params.append(flt.timestamp_lt)
    if flt.metadata is not None:
        conds.append(compile_metadata_filter(flt.metadata, doc, params))
    return conds


def compile_filters(filters: FilterSet, doc: str, params: list[object]) -> str:
    conds: list[str] = []
    for flt in filters.filters:
        conds += compile_filter(flt, doc, params)
    return " AND ".join(conds) if conds else "1"


class SqliteSearch:
    """Search half of :class:`SqliteStore` (kept apart to keep modules small)."""

    engine: SqliteEngine
    vectors: VectorIndexes
    keywords: KeywordIndexes
    exact_max: int
    filter_memo: FilterMemo

    def chunk_vectors(self, chunk_pks: Sequence[int], dim: int) -> tuple[list[int], Vectors]:
        raise NotImplementedError

    def _keywords(self, ds: DataSource) -> DataSourceKeywords:
        """The data source's keyword index, reconciled first if it is out of step with the database."""
        index = self.keywords.get(ds.id)
        try:
            index.flush()
        except Exception:  # left out of step: reconciled below
            log.exception("keyword index of data source %d: commit failed", ds.id)
        version = self._vector_version(ds)
        if index.version != version or index.needs_compaction():
            with index.lock:  # a writer mirroring its change holds it: wait, then look again
                if index.version != version:
                    index.refresh()  # another process may have brought it up to date
                with self.engine.snapshot() as conn:
                    row = conn.execute("SELECT vector_version FROM data_sources WHERE id = ?", (ds.id,)).fetchone()
                    current = int(row[0]) if row else 0
                    if index.version != current or index.needs_compaction():
                        index.reconcile(conn, ds.id, current)
        return index

    def _vector_version(self, ds: DataSource) -> int:
        row = self.engine.reader().execute("SELECT vector_version FROM data_sources WHERE id = ?", (ds.id,)).fetchone()
        return int(row[0]) if row else 0

    def _filtered_chunks(self, ds: DataSource, filters: FilterSet) -> list[int]:
        """The ids of the data source's chunks that pass the filters: the passing documents from SQL, their chunks
        from the exact matrix's document column (a binary search, not a join over every chunk row)."""
        index = self._ensure_index(ds)
        with index.lock:
            if index.matrix_ok:
                _, rows = self._filter_rows(ds, filters, index)
                ids: list[int] = index.matrix.keys[rows].tolist()
                return ids
        params: list[object] = [ds.id]
        where = compile_filters(filters, "d", params)
        cur = self.engine.reader().execute(
            "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_pk "
            f"WHERE c.data_source_id = ? AND {where}",
            params,
        )
        return [int(r[0]) for r in cur]

    def keyword_search(self, ds: DataSource, query: str, filters: FilterSet, k: int) -> list[ScoredId]:
        terms = query_terms(query)
        if not terms or k <= 0:
            return []
        index = self._keywords(ds)
        if filters.is_empty():
            hits = index.search(terms, k)
        else:
            hits = index.search_within(terms, k, self._filtered_chunks(ds, filters))
        return [ScoredId(pk, score) for pk, score in hits]

    def keyword_score_bound(self, ds: DataSource, query: str) -> float:
        """:func:`~alexandria.search.keyword.bm25_bound` for the query's terms in this data source: dividing a
        keyword score by it gives a score in [0, 1] with the same meaning for every query."""
        terms = query_terms(query)
        return self._keywords(ds).score_bound(terms) if terms else 0.0

    def keyword_scores(self, ds: DataSource, query: str, chunk_pks: Sequence[int]) -> dict[int, float]:
        """BM25 of exactly these chunks of the data source (those matching no term are left out)."""
        terms = query_terms(query)
        if not terms or not chunk_pks:
            return {}
        return dict(self._keywords(ds).scores(terms, chunk_pks))

    def vector_scores(self, ds: DataSource, vector: Vectors, chunk_pks: Sequence[int]) -> dict[int, float]:
        if not chunk_pks:
            return {}
        query = np.ascontiguousarray(vector.reshape(-1), dtype=np.float32)
        index = self._ensure_index(ds)
        wanted = np.fromiter(chunk_pks, dtype=np.int64, count=len(chunk_pks))
        with index.lock:
            ids, scores = index.matrix.scored(index.matrix.rows_of(wanted), query)
        out = {int(pk): float(s) for pk, s in zip(ids, scores, strict=True)}
        missing = [pk for pk in chunk_pks if pk not in out]
        if missing:  # rows newer than the index (another process wrote since): read from the database
            got, mat = self.chunk_vectors(missing, ds.dim)
            out.update({pk: float(s) for pk, s in zip(got, mat @ query, strict=True)})
        return out

    def _ensure_index(self, ds: DataSource) -> DataSourceIndex:
        """The data source's HNSW index and exact matrix, in step with the database's chunks."""
        index = self.vectors.get(ds.id, ds.dim)
        with index.lock:
            row = (
                self.engine.reader()
                .execute("SELECT vector_version FROM data_sources WHERE id = ?", (ds.id,))
                .fetchone()
            )
            version = int(row[0]) if row else 0
            if index.version != version or not index.matrix_ok:
                with self.engine.snapshot() as conn:
                    row = conn.execute("SELECT vector_version FROM data_sources WHERE id = ?", (ds.id,)).fetchone()
                    index.reconcile(conn, ds.id, int(row[0]) if row else 0)
        return index

    def candidate_documents(self, ds: DataSource, filters: FilterSet) -> npt.NDArray[np.int64]:
        """The ids of the data source's documents that pass the filters."""
        params: list[object] = [ds.id]
        where = compile_filters(filters, "d", params)
        cur = self.engine.reader().execute(
            f"SELECT d.id FROM documents d WHERE d.data_source_id = ? AND {where}", params
        )
        return np.fromiter((r[0] for r in cur), dtype=np.int64)

    def _filter_rows(
        self, ds: DataSource, filters: FilterSet, index: DataSourceIndex
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The documents passing the filters and their chunks' rows in the index's matrix (the caller holds the
        index's lock), from :class:`FilterMemo` while nothing was committed and the matrix is unchanged."""
        conn = self.engine.reader()
        stamp = (id(conn), int(conn.execute("PRAGMA data_version").fetchone()[0]), index.matrix.generation)
        key: tuple[int, FilterSet] | None = (ds.id, filters)
        try:
            found = self.filter_memo.get(key, stamp)
        except TypeError:  # a filter holding an unhashable value: resolved every time
            found, key = None, None
        if found is not None:
            return found
        documents = self.candidate_documents(ds, filters)
        rows = index.matrix.rows_of_documents(documents)
        if key is not None:
            self.filter_memo.put(key, stamp, documents, rows)
        return documents, rows

    def vector_search(self, ds: DataSource, vector: Vectors, filters: FilterSet, k: int) -> list[ScoredId]:
        if k <= 0:
            return []
        query = np.ascontiguousarray(vector.reshape(-1), dtype=np.float32)
        index = self._ensure_index(ds)
        base_ef = self.vectors.params.expansion_search
        with index.lock:
            matrix = index.matrix
            size = len(index)
            documents: npt.NDArray[np.int64] | None = None
            rows: npt.NDArray[np.int64] | None = None
            if filters.is_empty():  # every chunk
                plan = unfiltered_plan(size, k, base_ef)
                candidates = size
            else:
                documents, rows = self._filter_rows(ds, filters, index)
                candidates = len(rows)
                plan = filtered_plan(candidates, size, k, base_ef, self.exact_max)
            while not plan.exact:
                ids, scores = index.search(query, plan.fetch, plan.ef)
                if documents is not None:
                    keep = np.isin(matrix.documents_of(ids), documents)
                    ids, scores = ids[keep], scores[keep]
                if len(ids) >= min(k, candidates):
                    return [ScoredId(int(i), float(s)) for i, s in zip(ids[:k], scores[:k], strict=True)]
                # fewer than k passed the filter (or HNSW lost live vectors, as usearch may after removals)
                plan = widened(plan, candidates, size, base_ef)
            if rows is None:
                rows = np.flatnonzero(matrix.alive[: matrix.rows])
            ids, scores = matrix.top(rows, query, k)
        return [ScoredId(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]

    def latest_documents(self, ds: DataSource, filters: FilterSet, limit: int) -> list[int]:
        params: list[object] = [ds.id]
        where = compile_filters(filters, "d", params)
        params.append(limit)
        cur = self.engine.reader().execute(
            f"SELECT d.id FROM documents d WHERE d.data_source_id = ? AND {where} "
            "ORDER BY d.timestamp DESC, d.id DESC LIMIT ?",
            params,
        )
        return [int(r[0]) for r in cur]
