"""``alexandria export`` / ``import`` on the embedded store (a mixin of ``SqliteStore``): the sessions the neutral
exporter and importer of :mod:`alexandria.transfer` run over.

Export reads in one read transaction (a WAL snapshot). Import writes in one ``BEGIN IMMEDIATE`` transaction: every
row, each data source's FTS5 table (chunks enter it through the store's own chunk writer), and a ``vector_version``
bump; after the commit each imported data source's HNSW cache is built from the database (any stale cache file of
a reused data source id is dropped first), so the first search finds it ready.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from alexandria import transfer
from alexandria.domain.models import DataSource, Workspace
from alexandria.errors import AlreadyExists, InvalidRequest
from alexandria.ingest.base import Vectors
from alexandria.storage import rows as rowutil
from alexandria.storage.base import ChunkWrite
from alexandria.storage.sqlite.chunks import insert_chunks
from alexandria.storage.sqlite.db import SqliteEngine, quote_ident
from alexandria.storage.sqlite.vectors import VectorIndexes

# As SqliteStore.create_data_source makes it (tests/unit/test_transfer.py compares the two).
FTS_DDL = (
    "CREATE VIRTUAL TABLE {table} USING fts5(text, content='chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')"
)


def _fts(data_source_id: int) -> str:
    return quote_ident(f"fts_{int(data_source_id)}")


class _Export:
    vector_column = "vector"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def query(self, sql: str, params: Sequence[object]) -> Sequence[Sequence[Any]]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def vector_bytes(self, value: object) -> bytes:
        if not isinstance(value, bytes | memoryview):
            raise TypeError(f"a stored vector is a BLOB, not {type(value).__name__}")
        return bytes(value)  # stored as float32 little-endian


class _Import:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.data_source_ids: list[int] = []

    def query(self, sql: str, params: Sequence[object]) -> Sequence[Sequence[Any]]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def insert(self, sql: str, params: Sequence[object]) -> int:
        return int(self.conn.execute(sql, tuple(params)).fetchone()[0])

    def executemany(self, sql: str, params: Sequence[Sequence[object]]) -> None:
        self.conn.executemany(sql, [tuple(p) for p in params])

    def add_data_source(self, data_source_id: int, dim: int) -> None:
        fts = _fts(data_source_id)
        self.conn.execute(f"DROP TABLE IF EXISTS {fts}")  # left by a deleted data source of the same id
        self.conn.execute(FTS_DDL.format(table=fts))
        self.data_source_ids.append(data_source_id)

    def insert_chunks(
        self, data_source_id: int, document_pk: int, chunks: Sequence[ChunkWrite], vectors: Vectors
    ) -> None:
        insert_chunks(self.conn, _fts(data_source_id), data_source_id, document_pk, chunks, vectors)

    def finish(self, data_source_ids: Sequence[int]) -> None:
        self.conn.executemany(
            "UPDATE data_sources SET vector_version = vector_version + 1 WHERE id = ?", [(i,) for i in data_source_ids]
        )


class SqliteTransfer:
    """Export/import half of :class:`SqliteStore`."""

    engine: SqliteEngine
    vectors: VectorIndexes

    if TYPE_CHECKING:  # provided by SqliteStore's other mixins

        def _ensure_index(self, ds: DataSource) -> None: ...
        def get_data_source_by_id(self, data_source_id: int) -> DataSource | None: ...

    def iter_workspace_rows(self, workspace_sid: str) -> Iterator[tuple[str, dict[str, Any]]]:
        with self.engine.snapshot() as conn:
            yield from transfer.export_rows(_Export(conn), workspace_sid)

    def import_rows(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> Workspace:
        try:
            with self.engine.write() as conn:
                session = _Import(conn)
                workspace = transfer.import_rows(session, rows, rowutil.now_ms())
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise AlreadyExists(
                    f"the target store already holds an object of this workspace ({exc})", code="already_exists"
                ) from exc
            raise InvalidRequest(f"malformed export: {exc}") from exc
        for ds_id in session.data_source_ids:
            self.vectors.drop(ds_id)  # a stale cache of a deleted data source that had this id
            ds = self.get_data_source_by_id(ds_id)
            if ds is not None:
                self._ensure_index(ds)
        return workspace
