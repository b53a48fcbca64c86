"""The scale-out store's chunk index: chunk rows with their pgvector embeddings (a partial HNSW index per data
source), keyword postings (``chunk_terms``) and the data source's BM25 statistics, kept in step in one transaction."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import psycopg
from psycopg import sql

from alexandria.domain.models import DataSource
from alexandria.ingest.base import Vectors
from alexandria.storage.base import ChunkWrite
from alexandria.storage.chunk_index import checked_vectors
from alexandria.storage.database import Conn, Database

if TYPE_CHECKING:
    from alexandria.storage.postgres.bulk_load import PgChunkLoad

log = logging.getLogger(__name__)

TS_CONFIG = "english"
#: a posting's term frequency, over ``t`` an element of ``unnest(to_tsvector(...))``; a chunk's length (BM25's
#: document length) is their sum. Used by every chunk writer (one document's chunks here, a load's in bulk_load.py)
TERM_FREQUENCY = "coalesce(array_length(t.positions, 1), 1)"
CHUNK_LENGTH = f"coalesce(sum({TERM_FREQUENCY}), 0)"
#: maintenance_work_mem for building a loaded data source's HNSW index: room for its graph (pgvector builds much
#: faster when the graph fits), from 64 MiB up to this many MiB
HNSW_BUILD_MEMORY_MAX_MB = 4096


def hnsw_index_name(data_source_id: int) -> str:
    return f"chunks_hnsw_{int(data_source_id)}"


def insert_chunks(
    conn: psycopg.Connection, data_source_id: int, document_pk: int, chunks: Sequence[ChunkWrite], vecs: Vectors
) -> list[int]:
    """Insert a document's chunks in one statement (text, length in lexemes, embedding), then their keyword
    postings, and add them to the data source's BM25 statistics; returns their ids in order."""
    if not chunks:
        return []
    found = conn.execute(
        "INSERT INTO chunks (data_source_id, document_pk, chunk_offset, text, hash, token_count, embedding, length, "
        "segment_pk, child_pk) "
        "SELECT %s, %s, u.off, u.txt, u.h, u.tok, u.emb, "
        f"(SELECT {CHUNK_LENGTH} FROM unnest(to_tsvector('{TS_CONFIG}', u.txt)) t), u.seg, u.child "
        "FROM unnest(%s::int[], %s::text[], %s::text[], %s::int[], %s::vector[], %s::bigint[], %s::bigint[]) "
        "WITH ORDINALITY AS u(off, txt, h, tok, emb, seg, child, n) ORDER BY u.n RETURNING id, length, chunk_offset",
        (
            data_source_id,
            document_pk,
            [c.offset for c in chunks],
            [c.text for c in chunks],
            [c.hash for c in chunks],
            [c.token_count for c in chunks],
            [np.asarray(v, np.float32) for v in vecs],
            [c.segment_pk for c in chunks],
            [c.child_pk for c in chunks],
        ),
    ).fetchall()
    by_offset = {int(r[2]): int(r[0]) for r in found}
    ids = [by_offset[c.offset] for c in chunks] if len(by_offset) == len(found) else [int(r[0]) for r in found]
    conn.execute(
        "INSERT INTO chunk_terms (data_source_id, lexeme, chunk_id, tf, length) "
        f"SELECT c.data_source_id, t.lexeme, c.id, {TERM_FREQUENCY}, c.length "
        f"FROM chunks c CROSS JOIN LATERAL unnest(to_tsvector('{TS_CONFIG}', c.text)) t WHERE c.id = ANY(%s)",
        (ids,),
    )
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

    def create(self, conn: Conn, ds: DataSource) -> None:
        """The data source's ANN index: HNSW over its chunks' embeddings (half precision), a partial index."""
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
