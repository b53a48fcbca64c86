"""Keyword and vector search on PostgreSQL, with filters compiled to SQL.

Keyword: BM25 computed in SQL, as the embedded store's tantivy index computes it (k1 = 1.2, b = 0.75,
IDF = ln(1 + (N - n + 0.5)/(n + 0.5))), over the keyword analyzer's terms (``search/analysis.py``, the terms the
embedded store indexes too): a posting table (term, chunk, term frequency, chunk length in terms) whose covering index
holds everything BM25 reads, so a query touches only its terms' postings, like an inverted index; N and the total
length are kept per data source; a term's document frequency is its number of postings, cached until the data
source's chunks change. Unfiltered queries read the postings best-first and skip those that cannot reach the top k
(``keyword_topk.py``); filtered ones aggregate the postings of the filter's chunks.
Vector: pgvector HNSW over half-precision
embeddings (a partial index per data source) with iterative scans for filters, exact search over the filtered rows
when they are few; scores are cosines recomputed at full precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import psycopg

from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.domain.models import DataSource
from alexandria.ingest.base import Vectors
from alexandria.search.analysis import query_terms
from alexandria.search.ann import MAX_EF, filtered_plan, hnsw_ef, unfiltered_plan
from alexandria.search.keyword import BM25_B, BM25_K1, bm25_bound, bm25_idf
from alexandria.storage.base import ScoredId
from alexandria.storage.postgres.db import PgEngine
from alexandria.storage.postgres.keyword_topk import exact_scores, top_k
from alexandria.storage.postgres.metadata_sql import compile_metadata_filter


def _in_list(values: tuple[str, ...], table: str, key: str, negate: bool, params: list[object]) -> str:
    if not values:
        return "TRUE" if negate else "FALSE"
    params.append(list(values))
    return f"d.id {'NOT IN' if negate else 'IN'} (SELECT document_pk FROM {table} WHERE {key} = ANY(%s))"


def compile_filter(flt: DocumentFilter, params: list[object]) -> list[str]:
    """SQL conditions over the documents alias ``d`` (parameters appended to ``params``)."""
    conds: list[str] = []
    if flt.tags_in is not None:
        conds.append(_in_list(flt.tags_in, "document_tags", "tag", False, params))
    if flt.tags_not is not None:
        conds.append(_in_list(flt.tags_not, "document_tags", "tag", True, params))
    if flt.parents_in is not None:
        conds.append(_in_list(flt.parents_in, "document_parents", "parent", False, params))
    if flt.parents_not is not None:
        conds.append(_in_list(flt.parents_not, "document_parents", "parent", True, params))
    if flt.timestamp_gt is not None:
        conds.append("d.timestamp >= %s")
        params.append(flt.timestamp_gt)
    if flt.timestamp_lt is not None:
        conds.append("d.timestamp <= %s")
        params.append(flt.timestamp_lt)
    if flt.metadata is not None:
        conds.append(compile_metadata_filter(flt.metadata, "d", params))
    return conds


def compile_filters(filters: FilterSet, params: list[object]) -> str:
    conds = [c for flt in filters.filters for c in compile_filter(flt, params)]
    return " AND ".join(conds) if conds else "TRUE"


class PgSearch:
    """Search half of :class:`PostgresStore`."""

    engine: PgEngine
    exact_max: int
    hnsw_ef_search: int

    def _lexemes(self, conn: psycopg.Connection, query: str) -> list[str]:
        return query_terms(query)

    def _stats(self, conn: psycopg.Connection, ds: DataSource) -> tuple[int, int, int]:
        """``(chunk_total, chunk_length_total, stats_version)`` of the data source."""
        row = conn.execute(
            "SELECT chunk_total, chunk_length_total, stats_version FROM data_sources WHERE id = %s", (ds.id,)
        ).fetchone()
        return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)

    def _doc_freqs(self, conn: psycopg.Connection, ds: DataSource, version: int, lexemes: Sequence[str]) -> list[int]:
        """How many of the data source's chunks hold each lexeme (its postings, counted from the covering index),
        cached until the data source's chunks change."""
        cache: dict[tuple[int, int, str], int] = self.__dict__.setdefault("_df_cache", {})
        missing = [lex for lex in lexemes if (int(ds.id), version, lex) not in cache]
        if missing:
            if len(cache) > 200_000:
                cache.clear()
            counts: dict[str, int] = dict(
                conn.execute(
                    "SELECT lexeme, count(*) FROM chunk_terms WHERE data_source_id = %s AND lexeme = ANY(%s) "
                    "GROUP BY lexeme",
                    (ds.id, missing),
                ).fetchall()
            )
            for lex in missing:
                cache[(int(ds.id), version, lex)] = int(counts.get(lex, 0))
        return [cache[(int(ds.id), version, lex)] for lex in lexemes]

    def keyword_search(self, ds: DataSource, query: str, filters: FilterSet, k: int) -> list[ScoredId]:
        if k <= 0:
            return []
        with self.engine.snapshot() as conn:
            lexemes = self._lexemes(conn, query)
            if not lexemes:
                return []
            total, length_total, version = self._stats(conn, ds)
            if total == 0:
                return []
            avgdl = max(length_total / total, 1e-9)
            freqs = self._doc_freqs(conn, ds, version, lexemes)
            idfs = [bm25_idf(total, n) for n in freqs]
            if filters.is_empty():  # best-first over impact-ordered postings: cost follows k
                best = top_k(conn, int(ds.id), lexemes, idfs, freqs, avgdl, k)
                if best is not None:
                    return best
            k1, b = BM25_K1, BM25_B  # constants of the formula, inlined (never input)
            score = f"sum(w.idf * p.tf * {k1 + 1!r} / (p.tf + {k1!r} * (1 - {b!r} + {b!r} * p.length / {avgdl!r})))"
            params: list[object] = [list(lexemes), idfs, ds.id]
            join = ""
            where = "TRUE"
            if not filters.is_empty():
                join = "JOIN chunks c ON c.id = p.chunk_id JOIN documents d ON d.id = c.document_pk"
                where = compile_filters(filters, params)
            params.append(k)
            found = conn.execute(
                f"SELECT p.chunk_id, {score} AS score FROM chunk_terms p "
                "JOIN unnest(%s::text[], %s::float8[]) AS w(lexeme, idf) ON w.lexeme = p.lexeme "
                f"{join} WHERE p.data_source_id = %s AND {where} "
                "GROUP BY p.chunk_id ORDER BY score DESC, p.chunk_id LIMIT %s",
                tuple(params),
            ).fetchall()
        return [ScoredId(int(r[0]), float(r[1])) for r in found]

    def keyword_score_bound(self, ds: DataSource, query: str) -> float:
        with self.engine.snapshot() as conn:
            lexemes = self._lexemes(conn, query)
            if not lexemes:
                return 0.0
            total, _, version = self._stats(conn, ds)
            return bm25_bound(total, self._doc_freqs(conn, ds, version, lexemes))

    def keyword_scores(self, ds: DataSource, query: str, chunk_pks: Sequence[int]) -> dict[int, float]:
        """BM25 of exactly these chunks of the data source (those matching no term are left out): one index seek
        per (chunk, term), whatever the number of matches elsewhere."""
        if not chunk_pks:
            return {}
        with self.engine.snapshot() as conn:
            lexemes = self._lexemes(conn, query)
            if not lexemes:
                return {}
            total, length_total, version = self._stats(conn, ds)
            if total == 0:
                return {}
            freqs = self._doc_freqs(conn, ds, version, lexemes)
            idf_of = {lex: bm25_idf(total, n) for lex, n in zip(lexemes, freqs, strict=True)}
            mine = [
                int(r[0])
                for r in conn.execute(
                    "SELECT id FROM chunks WHERE id = ANY(%s) AND data_source_id = %s", (list(chunk_pks), ds.id)
                )
            ]
            return exact_scores(conn, mine, lexemes, idf_of, max(length_total / total, 1e-9))

    def vector_scores(self, ds: DataSource, vector: Vectors, chunk_pks: Sequence[int]) -> dict[int, float]:
        if not chunk_pks:
            return {}
        query = np.ascontiguousarray(vector.reshape(-1), dtype=np.float32)
        with self.engine.read() as conn:
            found = conn.execute(
                "SELECT id, 1 - (embedding <=> %s) FROM chunks WHERE id = ANY(%s)", (query, list(chunk_pks))
            ).fetchall()
        return {int(r[0]): float(r[1]) for r in found}

    def vector_search(self, ds: DataSource, vector: Vectors, filters: FilterSet, k: int) -> list[ScoredId]:
        if k <= 0:
            return []
        query = np.ascontiguousarray(vector.reshape(-1), dtype=np.float32)
        dim, ds_id = int(ds.dim), int(ds.id)
        params: list[object] = []
        where = compile_filters(filters, params)
        join = "JOIN documents d ON d.id = c.document_pk" if not filters.is_empty() else ""
        with self.engine.write() as conn:  # a transaction, for SET LOCAL
            row = conn.execute(f"SELECT chunk_total FROM data_sources WHERE id = {ds_id}").fetchone()
            size = int(row[0]) if row else 0
            if filters.is_empty():
                if unfiltered_plan(size, k, int(self.hnsw_ef_search)).exact:  # the rule both engines share
                    return self._exact(conn, ds_id, join, where, params, query, k)
            else:
                row = conn.execute(
                    f"SELECT count(*) FROM chunks c {join} WHERE c.data_source_id = {ds_id} AND {where}", tuple(params)
                ).fetchone()
                candidates = int(row[0]) if row else 0
                # exact when the candidates are few (recall 1.0 whatever the filter): the rule both engines share
                if filtered_plan(candidates, size, k, int(self.hnsw_ef_search), self.exact_max).exact:
                    return self._exact(conn, ds_id, join, where, params, query, k)
            # else HNSW with the filter as a predicate (pgvector's iterative scan); pgvector refuses an ef_search
            # over 1,000, and its iterative scan still returns k > 1,000 rows
            ef = min(MAX_EF, hnsw_ef(int(self.hnsw_ef_search), k, size))
            conn.execute(f"SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = relaxed_order")
            # ds id and dim are literals: the planner must match the data source's partial HNSW index
            found = conn.execute(
                f"SELECT c.id, 1 - (c.embedding <=> %s) AS s FROM chunks c {join} "
                f"WHERE c.data_source_id = {ds_id} AND {where} "
                f"ORDER BY (c.embedding::halfvec({dim})) <=> %s::halfvec({dim}) LIMIT %s",
                (query, *params, query, k),
            ).fetchall()
            if len(found) < k:  # fewer than k: HNSW may have missed live rows (pgvector, before a vacuum)
                row = conn.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM chunks c {join} WHERE c.data_source_id = {ds_id} "
                    f"AND {where} LIMIT %s) AS eligible",
                    (*params, k),
                ).fetchone()
                if row is not None and int(row[0]) > len(found):
                    return self._exact(conn, ds_id, join, where, params, query, k)
        hits = [ScoredId(int(r[0]), float(r[1])) for r in found]
        return sorted(hits, key=lambda h: (-h.score, h.pk))

    @staticmethod
    def _exact(
        conn: psycopg.Connection,
        ds_id: int,
        join: str,
        where: str,
        params: list[object],
        query: Vectors,
        k: int,
    ) -> list[ScoredId]:
        found = conn.execute(
            f"SELECT c.id, 1 - (c.embedding <=> %s) AS s FROM chunks c {join} "
            f"WHERE c.data_source_id = {ds_id} AND {where} ORDER BY c.embedding <=> %s, c.id LIMIT %s",
            (query, *params, query, k),
        ).fetchall()
        return [ScoredId(int(r[0]), float(r[1])) for r in found]

    def latest_documents(self, ds: DataSource, filters: FilterSet, limit: int) -> list[int]:
        params: list[object] = [ds.id]
        where = compile_filters(filters, params)
        params.append(limit)
        with self.engine.read() as conn:
            found = conn.execute(
                f"SELECT d.id FROM documents d WHERE d.data_source_id = %s AND {where} "
                "ORDER BY d.timestamp DESC, d.id DESC LIMIT %s",
                tuple(params),
            ).fetchall()
        return [int(r[0]) for r in found]
