"""The scale-out store's chunk index: chunk rows with their pgvector embeddings (a partial HNSW index per data
source), keyword postings (``chunk_terms``, the keyword analyzer's terms: ``search/analysis.py``) and the data
source's BM25 statistics, kept in step in one transaction."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from psycopg import sql

from alexandria.domain.models import DataSource
from alexandria.ingest.base import Vectors
from alexandria.search.analysis import ANALYZER_VERSION, document_terms
from alexandria.storage.base import ChunkWrite
from alexandria.storage.chunk_index import checked_vectors
from alexandria.storage.database import Conn, Database
from alexandria.storage.keyword_reindex import Progress, log_progress, reanalyze_stale

if TYPE_CHECKING:
    from alexandria.storage.postgres.bulk_load import PgChunkLoad

log = logging.getLogger(__name__)

#: maintenance_work_mem for building a loaded data source's HNSW index: room for its graph (pgvector builds much
#: faster when the graph fits), from 64 MiB up to this many MiB
HNSW_BUILD_MEMORY_MAX_MB = 4096


def hnsw_index_name(data_source_id: int) -> str:
    return f"chunks_hnsw_{int(data_source_id)}"


def chunk_postings(chunk_id: int, terms: Sequence[str]) -> Iterator[tuple[str, int, int, int]]:
    """A chunk's keyword postings ``(term, chunk id, tf, length)``: one per distinct term, with its frequency in the
    chunk and the chunk's length (its number of terms). Every writer of ``chunk_terms`` goes through here."""
    for term, tf in Counter(terms).items():
        yield term, chunk_id, tf, len(terms)


def insert_postings(conn: psycopg.Connection, data_source_id: int, analysed: Sequence[tuple[int, list[str]]]) -> None:
    """The keyword postings of chunks ``(chunk id, its terms)`` (:func:`chunk_postings`)."""
    terms: list[str] = []
    chunk_ids: list[int] = []
    tfs: list[int] = []
    lengths: list[int] = []
    for chunk_id, chunk_terms in analysed:
        for term, pk, tf, length in chunk_postings(chunk_id, chunk_terms):
            terms.append(term)
            chunk_ids.append(pk)
            tfs.append(tf)
            lengths.append(length)
    if terms:
        conn.execute(
            "INSERT INTO chunk_terms (data_source_id, lexeme, chunk_id, tf, length) "
            "SELECT %s, u.lexeme, u.chunk_id, u.tf, u.length "
            "FROM unnest(%s::text[], %s::bigint[], %s::int[], %s::int[]) AS u(lexeme, chunk_id, tf, length)",
            (data_source_id, terms, chunk_ids, tfs, lengths),
        )


def insert_chunks(
    conn: psycopg.Connection, data_source_id: int, document_pk: int, chunks: Sequence[ChunkWrite], vecs: Vectors
) -> list[int]:
    """Insert a document's chunks in one statement (text, length in terms, embedding), then their keyword
    postings (the analyzer's terms), and add them to the data source's BM25 statistics; returns their ids in
    order."""
    if not chunks:
        return []
    analysed = [document_terms(c.text) for c in chunks]
    found = conn.execute(
        "INSERT INTO chunks (data_source_id, document_pk, chunk_offset, text, hash, token_count, embedding, length, "
        "segment_pk, child_pk) "
        "SELECT %s, %s, u.off, u.txt, u.h, u.tok, u.emb, u.len, u.seg, u.child "
        "FROM unnest(%s::int[], %s::text[], %s::text[], %s::int[], %s::vector[], %s::int[], %s::bigint[], "
        "%s::bigint[]) WITH ORDINALITY AS u(off, txt, h, tok, emb, len, seg, child, n) ORDER BY u.n "
        "RETURNING id, length, chunk_offset",
        (
            data_source_id,
            document_pk,
            [c.offset for c in chunks],
            [c.text for c in chunks],
            [c.hash for c in chunks],
            [c.token_count for c in chunks],
            [np.asarray(v, np.float32) for v in vecs],
            [len(terms) for terms in analysed],
            [c.segment_pk for c in chunks],
            [c.child_pk for c in chunks],
        ),
    ).fetchall()
    by_offset = {int(r[2]): int(r[0]) for r in found}
    ids = [by_offset[c.offset] for c in chunks] if len(by_offset) == len(found) else [int(r[0]) for r in found]
    insert_postings(conn, data_source_id, list(zip(ids, analysed, strict=True)))
    conn.execute(
        "UPDATE data_sources SET chunk_total = chunk_total + %s, chunk_length_total = chunk_length_total + %s, "
        "stats_version = stats_version + 1 WHERE id = %s",
        (len(ids), sum(int(r[1]) for r in found), data_source_id),
    )
    return ids


def delete_chunks(conn: psycopg.Connection, data_source_id: int, where: str, params: Sequence[object]) -> int:
    """Delete the chunks matching ``where`` and take them out of the data source's BM25 statistics."""
    row = conn.execute(
        f"WITH gone AS (DELETE FROM chunks WHERE {where} RETURNING length) SELECT count(*), coalesce(sum(length), 0) "
        "FROM gone",
        tuple(params),
    ).fetchone()
    count, length = (int(row[0]), int(row[1])) if row else (0, 0)
    if count:
        conn.execute(
            "UPDATE data_sources SET chunk_total = chunk_total - %s, chunk_length_total = chunk_length_total - %s, "
            "stats_version = stats_version + 1 WHERE id = %s",
            (count, length, data_source_id),
        )
    return count


class PgKeywordRebuild:
    """:class:`~alexandria.storage.keyword_reindex.KeywordRebuild` over the posting table: the data source's
    postings replaced, its chunks' lengths and the total recounted in terms."""

    def start(self, conn: Conn, ds_id: int) -> None:
        conn.raw.execute("DELETE FROM chunk_terms WHERE data_source_id = %s", (ds_id,))

    def add(self, conn: Conn, ds_id: int, analysed: Sequence[tuple[int, list[str]]]) -> None:
        insert_postings(conn.raw, ds_id, analysed)
        conn.raw.execute(
            "UPDATE chunks SET length = u.length FROM unnest(%s::bigint[], %s::int[]) AS u(id, length) "
            "WHERE chunks.id = u.id",
            ([pk for pk, _ in analysed], [len(terms) for _, terms in analysed]),
        )

    def finish(self, conn: Conn, ds_id: int) -> None:
        conn.raw.execute(
            "UPDATE data_sources SET chunk_length_total = (SELECT coalesce(sum(length), 0) FROM chunks "
            "WHERE data_source_id = %s), stats_version = stats_version + 1 WHERE id = %s",
            (ds_id, ds_id),
        )


class PgChunkChange:
    def __init__(self, conn: Conn, ds: DataSource) -> None:
        self.conn = conn
        self.ds = ds

    def add(self, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors) -> list[int]:
        return insert_chunks(self.conn.raw, self.ds.id, document_pk, chunks, checked_vectors(self.ds, chunks, vectors))

    def remove_document(self, document_pk: int) -> None:
        delete_chunks(self.conn.raw, self.ds.id, "document_pk = %s", (document_pk,))


class PgChunkIndex:
    vector_column = "embedding"

    def __init__(self, db: Database, hnsw_m: int, hnsw_ef_construction: int) -> None:
        self.db = db
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction

    def stored_vector(self, value: object) -> Vectors:
        to_numpy = getattr(value, "to_numpy", None)  # pgvector loads a Vector
        return np.asarray(to_numpy() if to_numpy is not None else value, dtype=np.float32)

    @contextlib.contextmanager
    def change(self, ds: DataSource) -> Iterator[PgChunkChange]:
        with self.db.write() as conn:
            yield PgChunkChange(conn, ds)

    def reanalyze_stale(self, on_progress: Progress = log_progress) -> list[int]:
        """Rebuild the keyword postings of the data sources built by another analyzer
        (``storage/keyword_reindex.py``)."""
        return reanalyze_stale(self.db, PgKeywordRebuild(), on_progress)

    def create(self, conn: Conn, ds: DataSource) -> None:
        """The data source's ANN index: HNSW over its chunks' embeddings (half precision), a partial index; its
        keyword postings are recorded as this analyzer's."""
        conn.raw.execute("UPDATE data_sources SET keyword_analyzer = %s WHERE id = %s", (ANALYZER_VERSION, ds.id))
        conn.raw.execute(
            sql.SQL(
                "CREATE INDEX {} ON chunks USING hnsw ((embedding::halfvec({})) halfvec_cosine_ops) "
                "WITH (m = {}, ef_construction = {}) WHERE data_source_id = {}"
            ).format(
                sql.Identifier(hnsw_index_name(ds.id)),
                sql.Literal(int(ds.dim)),
                sql.Literal(int(self.hnsw_m)),
                sql.Literal(int(self.hnsw_ef_construction)),
                sql.Literal(int(ds.id)),
            )
        )

    @contextlib.contextmanager
    def dropping(self, ds: DataSource) -> Iterator[Conn]:
        with self.db.write() as conn:
            yield conn
        # Its partial HNSW index, once nothing can plan with it: concurrently (outside a transaction), so that
        # searches and writes of the other data sources never wait on the chunks table's exclusive lock. Ids are
        # never reused, so an index left by a failure here only costs its space.
        try:
            with self.db.engine.read() as raw:
                raw.execute(
                    sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(hnsw_index_name(ds.id)))
                )
        except psycopg.Error as exc:
            log.warning("could not drop %s of deleted data source %d: %s", hnsw_index_name(ds.id), ds.id, exc)

    @contextlib.contextmanager
    def loading(self) -> Iterator[PgChunkLoad]:
        """Chunks and postings in bulk (``bulk_load.py``), then each loaded data source's HNSW index built once
        over its rows, in the same transaction; ``ANALYZE`` once committed."""
        from alexandria.storage.postgres.bulk_load import PgChunkLoad

        with self.db.write() as conn:
            load = PgChunkLoad(conn)
            yield load
            load.finish()
            if load.data_sources:
                found = conn.raw.execute(
                    "SELECT count(*) FROM chunks WHERE data_source_id = ANY(%s)", ([ds.id for ds in load.data_sources],)
                ).fetchone()
                count = int(found[0]) if found else 0
                memory = min(HNSW_BUILD_MEMORY_MAX_MB, max(64, count * 2 // 1024))  # ~2 KiB a vector and its links
                conn.raw.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(f"{memory}MB")))
            for ds in load.data_sources:
                self.create(conn, ds)
        if load.data_sources:  # the planner's statistics, now that the tables have grown
            try:
                with self.db.engine.read() as raw:
                    raw.execute("ANALYZE chunks, chunk_terms, documents, document_tags, document_parents")
            except psycopg.Error as exc:
                log.warning("ANALYZE after a load failed: %s", exc)
