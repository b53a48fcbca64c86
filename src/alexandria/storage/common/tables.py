"""Tables and their rows, written once for both engines (a mixin of the stores). Per engine remain the SQL sandbox
(``query_tables``) and, optionally, faster primitives for writing many rows (PostgreSQL's COPY).

Rows are JSON objects in ``table_rows``, in first-insertion order (SQLite keeps them as text, PostgreSQL as ``json``,
not ``jsonb``: kept as written, so keys keep their order; both are read back as text). The schema is kept with the
table, by the rule of :func:`alexandria.tables.schema.schema_after_write`. Row writes of one table are serialised by
a lock on its ``data_tables`` row (SQLite's one writer needs none), so that the schema accumulation sees every batch.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from alexandria.domain.models import DataSource
from alexandria.domain.tables import QueryLimits, QueryResult, QueryTable, Table, TableRow, TableWrite
from alexandria.storage import rows as rowmap
from alexandria.storage.database import Conn, Database, DuplicateKey
from alexandria.tables.errors import table_name_taken, table_not_found
from alexandria.tables.schema import SchemaBuilder, schema_after_write, schema_from_json, schema_to_json
from alexandria.tables.values import dedupe_rows

TABLE_COLS = (
    "id, data_source_id, table_id, name, title, description, mime_type, timestamp, tags, parents, parent_id, "
    "source_url, remote_database_table_id, remote_database_secret_id, schema, schema_stale, rows_version, created, "
    "updated"
)
SCHEMA_BATCH = 2000  # rows read at a time when a schema is recomputed
VALUE_TEXT = "CAST(value AS TEXT)"  # a row's JSON as written (text in SQLite, ``json`` in PostgreSQL)
_SANDBOX_LOCK = threading.Lock()


class SqlSandbox(Protocol):
    """An engine's read-only SQL over tables (``storage/sqlite/sql.py``, ``storage/postgres/sql.py``)."""

    def query(self, tables: Sequence[QueryTable], query: str, limits: QueryLimits) -> QueryResult: ...
    def close(self) -> None: ...


def dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def table_from_row(row: Sequence[object]) -> Table:
    raw_schema = rowmap.js(row[14])
    return Table(
        pk=int(str(row[0])),
        data_source_id=int(str(row[1])),
        table_id=str(row[2]),
        name=str(row[3]),
        title=str(row[4]),
        description=str(row[5]),
        mime_type=str(row[6]),
        timestamp=int(str(row[7])),
        tags=tuple(rowmap.js(row[8], [])),
        parents=tuple(rowmap.js(row[9], [])),
        parent_id=None if row[10] is None else str(row[10]),
        source_url=None if row[11] is None else str(row[11]),
        remote_database_table_id=None if row[12] is None else str(row[12]),
        remote_database_secret_id=None if row[13] is None else str(row[13]),
        schema=schema_from_json(raw_schema) if raw_schema is not None else None,
        schema_stale=bool(row[15]),
        rows_version=int(str(row[16])),
        created=int(str(row[17])),
        updated=int(str(row[18])),
    )


def find_table(conn: Conn, ds: DataSource, table_id: str, lock: bool = False) -> Table | None:
    row = conn.one(
        f"SELECT {TABLE_COLS} FROM data_tables WHERE data_source_id = ? AND table_id = ?"
        + (conn.dialect.for_update if lock else ""),
        (ds.id, table_id),
    )
    return table_from_row(row) if row else None


def require_table(conn: Conn, ds: DataSource, table_id: str, lock: bool = False) -> Table:
    table = find_table(conn, ds, table_id, lock)
    if table is None:
        raise table_not_found(table_id)
    return table


def name_owner(conn: Conn, ds: DataSource, name: str, table_id: str) -> str | None:
    """The id of the other table of ``ds`` named ``name``, if any."""
    found = conn.scalar(
        "SELECT table_id FROM data_tables WHERE data_source_id = ? AND name = ? AND table_id <> ?",
        (ds.id, name, table_id),
    )
    return None if found is None else str(found)


class TableRows:
    """Tables half of the stores, over :class:`Database`."""

    db: Database

    # --- engine primitives ---------------------------------------------------------------------------------------
    def _new_sandbox(self) -> SqlSandbox:
        """The engine's SQL sandbox (every engine has its own)."""
        raise NotImplementedError

    def _append_rows(self, conn: Conn, table_pk: int, encoded: Sequence[tuple[str, str]]) -> None:
        """Append new ``(row_id, json)`` rows, in order. The caller holds the table's lock and knows none of the ids
        is stored yet."""
        conn.executemany(
            "INSERT INTO table_rows (table_pk, row_id, value) VALUES (?, ?, ?)",
            [(table_pk, row_id, value) for row_id, value in encoded],
        )

    def _replace_rows(self, conn: Conn, table_pk: int, encoded: Sequence[tuple[str, str]]) -> None:
        """Replace the values of stored rows (they keep their place)."""
        conn.executemany(
            "UPDATE table_rows SET value = ? WHERE table_pk = ? AND row_id = ?",
            [(value, table_pk, row_id) for row_id, value in encoded],
        )

    # --- SQL -----------------------------------------------------------------------------------------------------
    def _query_engine(self) -> SqlSandbox:
        engine: SqlSandbox | None = self.__dict__.get("_sql_engine")
        if engine is None:
            with _SANDBOX_LOCK:
                engine = self.__dict__.get("_sql_engine")
                if engine is None:
                    engine = self._new_sandbox()
                    self.__dict__["_sql_engine"] = engine
                    # the sandbox's databases or connections are closed with the store (or when it is collected)
                    weakref.finalize(self, engine.close)
        return engine

    def query_tables(self, tables: Sequence[QueryTable], query: str, limits: QueryLimits) -> QueryResult:
        return self._query_engine().query(tables, query, limits)

    def close_sql_engine(self) -> None:
        """Close the SQL sandbox (a next query starts a new one, which checks the sandbox again)."""
        with _SANDBOX_LOCK:
            engine: SqlSandbox | None = self.__dict__.pop("_sql_engine", None)
        if engine is not None:
            engine.close()

    # --- tables --------------------------------------------------------------------------------------------------
    def upsert_table(self, ds: DataSource, write: TableWrite) -> Table:
        now = rowmap.now_ms()
        values = (
            write.name,
            write.title,
            write.description,
            write.mime_type,
            write.timestamp,
            dumps(list(write.tags)),
            dumps(list(write.parents)),
            write.parent_id,
            write.source_url,
            write.remote_database_table_id,
            write.remote_database_secret_id,
        )
        try:
            with self.db.write() as conn:
                clash = name_owner(conn, ds, write.name, write.table_id)
                if clash is not None:
                    raise table_name_taken(write.name, clash)
                row = conn.one(
                    "INSERT INTO data_tables (name, title, description, mime_type, timestamp, tags, parents, "
                    "parent_id, source_url, remote_database_table_id, remote_database_secret_id, created, updated, "
                    "data_source_id, table_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (data_source_id, table_id) DO UPDATE SET name = excluded.name, "
                    "title = excluded.title, description = excluded.description, mime_type = excluded.mime_type, "
                    "timestamp = excluded.timestamp, tags = excluded.tags, parents = excluded.parents, "
                    "parent_id = excluded.parent_id, source_url = excluded.source_url, "
                    "remote_database_table_id = excluded.remote_database_table_id, "
                    "remote_database_secret_id = excluded.remote_database_secret_id, updated = excluded.updated "
                    f"RETURNING {TABLE_COLS}",
                    (*values, now, now, ds.id, write.table_id),
                )
        except DuplicateKey as exc:
            # another writer took the name between our check and our write
            with self.db.read() as conn:
                raise table_name_taken(write.name, name_owner(conn, ds, write.name, write.table_id)) from exc
        if row is None:
            raise table_not_found(write.table_id)  # an upsert returns its row: unreachable
        return table_from_row(row)

    def get_table(self, ds: DataSource, table_id: str) -> Table | None:
        with self.db.read() as conn:
            return find_table(conn, ds, table_id)

    def list_tables(self, ds: DataSource) -> list[Table]:
        with self.db.read() as conn:
            found = conn.all(f"SELECT {TABLE_COLS} FROM data_tables WHERE data_source_id = ? ORDER BY id", (ds.id,))
        return [table_from_row(r) for r in found]

    def delete_table(self, ds: DataSource, table_id: str) -> bool:
        with self.db.write() as conn:
            cur = conn.execute("DELETE FROM data_tables WHERE data_source_id = ? AND table_id = ?", (ds.id, table_id))
            return int(cur.rowcount) > 0

    def update_table_parents(
        self, ds: DataSource, table_id: str, parents: Sequence[str], parent_id: str | None
    ) -> bool:
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE data_tables SET parents = ?, parent_id = ?, updated = ? WHERE data_source_id = ? "
                "AND table_id = ?",
                (dumps(list(parents)), parent_id, rowmap.now_ms(), ds.id, table_id),
            )
            return int(cur.rowcount) > 0

    # --- rows ----------------------------------------------------------------------------------------------------
    def upsert_table_rows(self, ds: DataSource, table_id: str, rows: Sequence[TableRow], truncate: bool) -> Table:
        unique = dedupe_rows(list(rows))
        encoded = [(r.row_id, dumps(r.value)) for r in unique]
        with self.db.write() as conn:
            table = require_table(conn, ds, table_id, lock=True)
            existing: dict[str, str] = {}
            if truncate:
                conn.execute("DELETE FROM table_rows WHERE table_pk = ?", (table.pk,))
            elif encoded:
                found = conn.all(
                    f"SELECT row_id, {VALUE_TEXT} FROM table_rows WHERE table_pk = ? AND "
                    f"{conn.dialect.any_of('row_id')}",
                    (table.pk, conn.dialect.seq(row_id for row_id, _ in encoded)),
                )
                existing = {str(r[0]): str(r[1]) for r in found}
            appended = [(row_id, value) for row_id, value in encoded if row_id not in existing]
            replacing = [(row_id, value) for row_id, value in encoded if existing.get(row_id, value) != value]
            self._append_rows(conn, table.pk, appended)
            self._replace_rows(conn, table.pk, replacing)
            schema, stale = schema_after_write(
                table.schema, table.schema_stale, truncate, bool(replacing),
                [r.value for r in unique if r.row_id not in existing],
            )  # fmt: skip
            row = conn.one(
                "UPDATE data_tables SET schema = ?, schema_stale = ?, rows_version = rows_version + ?, updated = ? "
                f"WHERE id = ? RETURNING {TABLE_COLS}",
                (
                    dumps(schema_to_json(schema)) if schema is not None else None,
                    stale,
                    int(truncate or bool(appended or replacing)),
                    rowmap.now_ms(),
                    table.pk,
                ),
            )
        if row is None:
            raise table_not_found(table_id)  # the table's row is locked: unreachable
        return table_from_row(row)

    def refresh_table_schema(self, ds: DataSource, table_id: str) -> Table:
        """The table with an exact schema: recomputed from all its rows if stale (and stored, unless the rows
        changed meanwhile)."""
        with self.db.snapshot() as conn:
            table = require_table(conn, ds, table_id)
            if not table.schema_stale:
                return table
            builder = SchemaBuilder()
            last = -1
            while True:
                batch = conn.all(
                    f"SELECT id, {VALUE_TEXT} FROM table_rows WHERE table_pk = ? AND id > ? ORDER BY id LIMIT ?",
                    (table.pk, last, SCHEMA_BATCH),
                )
                for _, value in batch:
                    builder.add_row(json.loads(value))
                if len(batch) < SCHEMA_BATCH:
                    break
                last = int(batch[-1][0])
            schema = builder.columns()
        with self.db.write() as conn:
            conn.execute(
                "UPDATE data_tables SET schema = ?, schema_stale = FALSE WHERE id = ? AND rows_version = ? "
                "AND schema_stale = TRUE",
                (dumps(schema_to_json(schema)), table.pk, table.rows_version),
            )
        return replace(table, schema=schema, schema_stale=False)

    def list_table_rows(self, ds: DataSource, table_id: str, limit: int, offset: int) -> tuple[list[TableRow], int]:
        with self.db.snapshot() as conn:
            table = require_table(conn, ds, table_id)
            total = int(conn.scalar("SELECT count(*) FROM table_rows WHERE table_pk = ?", (table.pk,)) or 0)
            found = conn.all(
                f"SELECT row_id, {VALUE_TEXT} FROM table_rows WHERE table_pk = ? ORDER BY id LIMIT ? OFFSET ?",
                (table.pk, limit, offset),
            )
        return [TableRow(str(r[0]), json.loads(r[1])) for r in found], total

    def get_table_row(self, ds: DataSource, table_id: str, row_id: str) -> TableRow | None:
        with self.db.snapshot() as conn:
            table = require_table(conn, ds, table_id)
            row = conn.one(
                f"SELECT row_id, {VALUE_TEXT} FROM table_rows WHERE table_pk = ? AND row_id = ?", (table.pk, row_id)
            )
        return TableRow(str(row[0]), json.loads(row[1])) if row else None

    def delete_table_row(self, ds: DataSource, table_id: str, row_id: str) -> bool:
        with self.db.write() as conn:
            table = require_table(conn, ds, table_id, lock=True)
            cur = conn.execute("DELETE FROM table_rows WHERE table_pk = ? AND row_id = ?", (table.pk, row_id))
            if int(cur.rowcount) == 0:
                return False
            # a deleted row makes the schema stale (schema_after_write's rule)
            conn.execute(
                "UPDATE data_tables SET schema_stale = TRUE, rows_version = rows_version + 1, updated = ? WHERE id = ?",
                (rowmap.now_ms(), table.pk),
            )
        return True
