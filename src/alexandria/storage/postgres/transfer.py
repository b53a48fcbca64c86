"""``alexandria export`` / ``import`` on PostgreSQL (a mixin of ``PostgresStore``): the sessions the neutral exporter
and importer of :mod:`alexandria.transfer` run over.

Export reads in one ``REPEATABLE READ, READ ONLY`` transaction. Import writes in one transaction: every row; chunks
through the store's own chunk writer (tsvector, term frequencies, length, and the data source's BM25 statistics
``chunk_total`` / ``chunk_length_total`` / ``stats_version``); and, after the chunks, each data source's partial
HNSW index (built once over the loaded rows rather than grown row by row).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from alexandria import transfer
from alexandria.domain.models import Workspace
from alexandria.errors import AlreadyExists, InvalidRequest
from alexandria.ingest.base import Vectors
from alexandria.storage import rows as rowutil
from alexandria.storage.base import ChunkWrite
from alexandria.storage.postgres.chunk_index import hnsw_index_name, insert_chunks
from alexandria.storage.postgres.db import PgEngine


def _pg(query: str) -> str:
    """The neutral SQL's ``?`` placeholders as psycopg's (that SQL holds no other ``?`` and no ``%``)."""
    return query.replace("?", "%s")


class _Export:
    vector_column = "embedding"

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def query(self, sql_: str, params: Sequence[object]) -> Sequence[Sequence[Any]]:
        return self.conn.execute(_pg(sql_), tuple(params)).fetchall()

    def vector_bytes(self, value: object) -> bytes:
        to_numpy = getattr(value, "to_numpy", None)  # pgvector loads a Vector
        return np.asarray(to_numpy() if to_numpy is not None else value, dtype="<f4").tobytes()


class _Import:
    def __init__(self, conn: psycopg.Connection, hnsw_m: int, hnsw_ef_construction: int) -> None:
        self.conn = conn
        self.hnsw_m = hnsw_m
        self.hnsw_ef_construction = hnsw_ef_construction
        self.dims: dict[int, int] = {}

    def query(self, sql_: str, params: Sequence[object]) -> Sequence[Sequence[Any]]:
        return self.conn.execute(_pg(sql_), tuple(params)).fetchall()

    def insert(self, sql_: str, params: Sequence[object]) -> int:
        row = self.conn.execute(_pg(sql_), tuple(params)).fetchone()
        assert row is not None
        return int(row[0])

    def executemany(self, sql_: str, params: Sequence[Sequence[object]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_pg(sql_), [tuple(p) for p in params])

    def add_data_source(self, data_source_id: int, dim: int) -> None:
        self.dims[data_source_id] = dim

    def insert_chunks(
        self, data_source_id: int, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors
    ) -> None:
        insert_chunks(self.conn, data_source_id, document_pk, chunks, vectors)

    def finish(self, data_source_ids: Sequence[int]) -> None:
        for ds_id in data_source_ids:  # as PgCore.create_data_source makes it
            self.conn.execute(
                sql.SQL(
                    "CREATE INDEX {} ON chunks USING hnsw ((embedding::halfvec({})) halfvec_cosine_ops) "
                    "WITH (m = {}, ef_construction = {}) WHERE data_source_id = {}"
                ).format(
                    sql.Identifier(hnsw_index_name(ds_id)),
                    sql.Literal(int(self.dims[ds_id])),
                    sql.Literal(int(self.hnsw_m)),
                    sql.Literal(int(self.hnsw_ef_construction)),
                    sql.Literal(int(ds_id)),
                )
            )


class PgTransfer:
    """Export/import half of :class:`PostgresStore`."""

    engine: PgEngine
    hnsw_m: int
    hnsw_ef_construction: int

    def iter_workspace_rows(self, workspace_sid: str) -> Iterator[tuple[str, dict[str, Any]]]:
        with self.engine.snapshot() as conn:
            yield from transfer.export_rows(_Export(conn), workspace_sid)

    def import_rows(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> Workspace:
        try:
            with self.engine.write() as conn:
                session = _Import(conn, self.hnsw_m, self.hnsw_ef_construction)
                return transfer.import_rows(session, rows, rowutil.now_ms())
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail or str(exc)
            raise AlreadyExists(
                f"the target store already holds an object of this workspace ({detail})", code="already_exists"
            ) from exc
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
            raise InvalidRequest(f"malformed export: {exc}") from exc
