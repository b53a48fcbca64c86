"""Tables and rows for the SQLite store (a mixin of :class:`SqliteStore`).

Rows are JSON objects in ``table_rows``, in first-insertion order. The schema is kept with the table and stays exact
without reading the table again when rows are only appended (the inference continues over the new rows); replacing a
row with a different value or deleting one marks it stale, and :meth:`refresh_table_schema` recomputes it from all
rows (Dust's ``schema_stale_at``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from collections.abc import Sequence
from dataclasses import replace

from alexandria.domain.models import DataSource
from alexandria.domain.tables import QueryLimits, QueryResult, QueryTable, RowValue, Table, TableRow, TableWrite
from alexandria.storage import rows as rowmap
from alexandria.storage.sqlite.db import SqliteEngine
from alexandria.storage.sqlite.sql import QueryEngine
from alexandria.tables.errors import TableNameNotUnique, TableNotFound
from alexandria.tables.schema import SchemaBuilder, from_rows, schema_from_json, schema_to_json
from alexandria.tables.values import dedupe_rows

TABLE_COLS = (
    "id, data_source_id, table_id, name, title, description, mime_type, timestamp, tags, parents, parent_id, "
    "source_url, remote_database_table_id, remote_database_secret_id, schema, schema_stale, rows_version, created, "
    "updated"
)
_ENGINE_LOCK = threading.Lock()


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def table_from_row(row: tuple[object, ...]) -> Table:
    return Table(
        pk=int(str(row[0])),
        data_source_id=int(str(row[1])),
        table_id=str(row[2]),
        name=str(row[3]),
        title=str(row[4]),
        description=str(row[5]),
        mime_type=str(row[6]),
        timestamp=int(str(row[7])),
        tags=tuple(json.loads(str(row[8]))),
        parents=tuple(json.loads(str(row[9]))),
        parent_id=None if row[10] is None else str(row[10]),
        source_url=None if row[11] is None else str(row[11]),
        remote_database_table_id=None if row[12] is None else str(row[12]),
        remote_database_secret_id=None if row[13] is None else str(row[13]),
        schema=schema_from_json(json.loads(str(row[14]))) if row[14] is not None else None,
        schema_stale=bool(row[15]),
        rows_version=int(str(row[16])),
        created=int(str(row[17])),
        updated=int(str(row[18])),
    )


def _not_found(table_id: str) -> TableNotFound:
    return TableNotFound(f"Table `{table_id}` not found.")


class SqliteTables:
    """Tables half of :class:`SqliteStore`."""

    engine: SqliteEngine

    # --- tables --------------------------------------------------------------------------------------------------
    @staticmethod
    def _table(conn: sqlite3.Connection, ds: DataSource, table_id: str) -> Table | None:
        row = conn.execute(
            f"SELECT {TABLE_COLS} FROM data_tables WHERE data_source_id = ? AND table_id = ?", (ds.id, table_id)
        ).fetchone()
        return table_from_row(row) if row else None

    def upsert_table(self, ds: DataSource, write: TableWrite) -> Table:
        now = rowmap.now_ms()
        values = (
            write.name,
            write.title,
            write.description,
            write.mime_type,
            write.timestamp,
            _dumps(list(write.tags)),
            _dumps(list(write.parents)),
            write.parent_id,
            write.source_url,
            write.remote_database_table_id,
            write.remote_database_secret_id,
        )
        with self.engine.write() as conn:
            clash = conn.execute(
                "SELECT table_id FROM data_tables WHERE data_source_id = ? AND name = ? AND table_id != ?",
                (ds.id, write.name, write.table_id),
            ).fetchone()
            if clash is not None:
                raise TableNameNotUnique(
                    f"A table named `{write.name}` already exists in this data source (table_id `{clash[0]}`)."
                )
            if self._table(conn, ds, write.table_id) is not None:
                conn.execute(
                    "UPDATE data_tables SET name=?, title=?, description=?, mime_type=?, timestamp=?, tags=?, "
                    "parents=?, parent_id=?, source_url=?, remote_database_table_id=?, remote_database_secret_id=?, "
                    "updated=? WHERE data_source_id = ? AND table_id = ?",
                    (*values, now, ds.id, write.table_id),
                )
            else:
                conn.execute(
                    "INSERT INTO data_tables (name, title, description, mime_type, timestamp, tags, parents, "
                    "parent_id, source_url, remote_database_table_id, remote_database_secret_id, created, updated, "
                    "data_source_id, table_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, now, now, ds.id, write.table_id),
                )
            table = self._table(conn, ds, write.table_id)
        assert table is not None
        return table

    def get_table(self, ds: DataSource, table_id: str) -> Table | None:
        return self._table(self.engine.reader(), ds, table_id)

    def list_tables(self, ds: DataSource) -> list[Table]:
        cur = self.engine.reader().execute(
            f"SELECT {TABLE_COLS} FROM data_tables WHERE data_source_id = ? ORDER BY id", (ds.id,)
        )
        return [table_from_row(r) for r in cur]

    def delete_table(self, ds: DataSource, table_id: str) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute("DELETE FROM data_tables WHERE data_source_id = ? AND table_id = ?", (ds.id, table_id))
            return cur.rowcount > 0

    def update_table_parents(
        self, ds: DataSource, table_id: str, parents: Sequence[str], parent_id: str | None
    ) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE data_tables SET parents = ?, parent_id = ?, updated = ? WHERE data_source_id = ? "
                "AND table_id = ?",
                (_dumps(list(parents)), parent_id, rowmap.now_ms(), ds.id, table_id),
            )
            return cur.rowcount > 0

    # --- rows ----------------------------------------------------------------------------------------------------
    def upsert_table_rows(self, ds: DataSource, table_id: str, rows: Sequence[TableRow], truncate: bool) -> Table:
        unique = dedupe_rows(list(rows))
        encoded = [(r.row_id, _dumps(r.value)) for r in unique]
        with self.engine.write() as conn:
            table = self._table(conn, ds, table_id)
            if table is None:
                raise _not_found(table_id)
            schema = table.schema
            stale = table.schema_stale
            changed = True
            if truncate:
                conn.execute("DELETE FROM table_rows WHERE table_pk = ?", (table.pk,))
                conn.executemany(
                    "INSERT INTO table_rows (table_pk, row_id, value) VALUES (?, ?, ?)",
                    [(table.pk, row_id, value) for row_id, value in encoded],
                )
                schema, stale = from_rows(r.value for r in unique), False
            else:
                existing = dict(
                    conn.execute(
                        "SELECT row_id, value FROM table_rows WHERE table_pk = ? AND row_id IN "
                        "(SELECT value FROM json_each(?))",
                        (table.pk, _dumps([row_id for row_id, _ in encoded])),
                    ).fetchall()
                )
                writes = [(table.pk, row_id, value) for row_id, value in encoded if existing.get(row_id) != value]
                replaced = any(row_id in existing for _, row_id, _ in writes)
                conn.executemany(
                    "INSERT INTO table_rows (table_pk, row_id, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (table_pk, row_id) DO UPDATE SET value = excluded.value",
                    writes,
                )
                changed = bool(writes)
                if replaced:
                    stale = True
                elif not stale:
                    # only appended rows: continue the inference over them (exact, see tables/schema.py)
                    fresh: list[RowValue] = [r.value for r in unique if r.row_id not in existing]
                    schema = SchemaBuilder(schema or ()).add_rows(fresh).columns()
            conn.execute(
                "UPDATE data_tables SET schema = ?, schema_stale = ?, rows_version = rows_version + ?, "
                "updated = ? WHERE id = ?",
                (
                    _dumps(schema_to_json(schema)) if schema is not None else None,
                    int(stale),
                    int(changed),
                    rowmap.now_ms(),
                    table.pk,
                ),
            )
            out = self._table(conn, ds, table_id)
        assert out is not None
        return out

    def refresh_table_schema(self, ds: DataSource, table_id: str) -> Table:
        """The table with an exact schema: recomputed from all its rows if stale (and stored, unless the rows
        changed meanwhile)."""
        with self.engine.snapshot() as conn:
            table = self._table(conn, ds, table_id)
            if table is None:
                raise _not_found(table_id)
            if not table.schema_stale:
                return table
            builder = SchemaBuilder()
            for (value,) in conn.execute("SELECT value FROM table_rows WHERE table_pk = ? ORDER BY id", (table.pk,)):
                builder.add_row(json.loads(value))
            schema = builder.columns()
        with self.engine.write() as conn:
            conn.execute(
                "UPDATE data_tables SET schema = ?, schema_stale = 0 WHERE id = ? AND rows_version = ? "
                "AND schema_stale = 1",
                (_dumps(schema_to_json(schema)), table.pk, table.rows_version),
            )
        return replace(table, schema=schema, schema_stale=False)

    def list_table_rows(self, ds: DataSource, table_id: str, limit: int, offset: int) -> tuple[list[TableRow], int]:
        with self.engine.snapshot() as conn:
            table = self._table(conn, ds, table_id)
            if table is None:
                raise _not_found(table_id)
            total = int(conn.execute("SELECT count(*) FROM table_rows WHERE table_pk = ?", (table.pk,)).fetchone()[0])
            cur = conn.execute(
                "SELECT row_id, value FROM table_rows WHERE table_pk = ? ORDER BY id LIMIT ? OFFSET ?",
                (table.pk, limit, offset),
            )
            found = [TableRow(str(r[0]), json.loads(r[1])) for r in cur]
        return found, total

    def get_table_row(self, ds: DataSource, table_id: str, row_id: str) -> TableRow | None:
        with self.engine.snapshot() as conn:
            table = self._table(conn, ds, table_id)
            if table is None:
                raise _not_found(table_id)
            row = conn.execute(
                "SELECT row_id, value FROM table_rows WHERE table_pk = ? AND row_id = ?", (table.pk, row_id)
            ).fetchone()
        return TableRow(str(row[0]), json.loads(row[1])) if row else None

    def delete_table_row(self, ds: DataSource, table_id: str, row_id: str) -> bool:
        with self.engine.write() as conn:
            table = self._table(conn, ds, table_id)
            if table is None:
                raise _not_found(table_id)
            cur = conn.execute("DELETE FROM table_rows WHERE table_pk = ? AND row_id = ?", (table.pk, row_id))
            if cur.rowcount == 0:
                return False
            conn.execute(
                "UPDATE data_tables SET schema_stale = 1, rows_version = rows_version + 1, updated = ? WHERE id = ?",
                (rowmap.now_ms(), table.pk),
            )
        return True

    # --- SQL -----------------------------------------------------------------------------------------------------
    def _query_engine(self) -> QueryEngine:
        engine: QueryEngine | None = self.__dict__.get("_sql_engine")
        if engine is None:
            with _ENGINE_LOCK:
                engine = self.__dict__.get("_sql_engine")
                if engine is None:
                    engine = QueryEngine(self.engine.path)
                    self.__dict__["_sql_engine"] = engine
                    # the cached in-memory databases are closed with the store (or when it is collected)
                    weakref.finalize(self, engine.close)
        return engine

    def query_tables(self, tables: Sequence[QueryTable], query: str, limits: QueryLimits) -> QueryResult:
        return self._query_engine().query(tables, query, limits)
