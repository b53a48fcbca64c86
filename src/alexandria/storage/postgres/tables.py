"""Tables and rows for the PostgreSQL store (a mixin of :class:`PostgresStore`), the port of
``storage.sqlite.tables``: the same behaviour through the same ``Store`` methods.

Rows are JSON objects in ``table_rows`` (``json``, not ``jsonb``: kept as written, so keys keep their order), in
first-insertion order. The schema is kept with the table and stays exact without reading the table again when rows
are only appended; replacing a row with a different value or deleting one marks it stale, and
:meth:`refresh_table_schema` recomputes it from all rows (Dust's ``schema_stale_at``). Row writes of one table are
serialised by a row lock on its ``data_tables`` row, so that the schema accumulation sees every batch.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Sequence
from dataclasses import replace

import psycopg

from alexandria.domain.models import DataSource
from alexandria.domain.tables import QueryLimits, QueryResult, QueryTable, RowValue, Table, TableRow, TableWrite
from alexandria.storage import rows as rowmap
from alexandria.storage.postgres.db import PgEngine
from alexandria.storage.postgres.sql import PgQueryEngine
from alexandria.tables.errors import TableNameNotUnique, TableNotFound
from alexandria.tables.schema import SchemaBuilder, from_rows, schema_from_json, schema_to_json
from alexandria.tables.values import dedupe_rows

TABLE_COLS = (
    "id, data_source_id, table_id, name, title, description, mime_type, timestamp, tags, parents, parent_id, "
    "source_url, remote_database_table_id, remote_database_secret_id, schema, schema_stale, rows_version, created, "
    "updated"
)
SCHEMA_BATCH = 2000  # rows fetched at a time when a schema is recomputed
_ENGINE_LOCK = threading.Lock()


def _dumps(value: object) -> str:
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


def _not_found(table_id: str) -> TableNotFound:
    return TableNotFound(f"Table `{table_id}` not found.")


def _name_taken(name: str, table_id: str | None) -> TableNameNotUnique:
    owner = f" (table_id `{table_id}`)" if table_id is not None else ""
    return TableNameNotUnique(f"A table named `{name}` already exists in this data source{owner}.")


class PgTables:
    """Tables half of :class:`PostgresStore`."""

    engine: PgEngine

    # --- tables --------------------------------------------------------------------------------------------------
    @staticmethod
    def _table(conn: psycopg.Connection, ds: DataSource, table_id: str, lock: bool = False) -> Table | None:
        row = conn.execute(
            f"SELECT {TABLE_COLS} FROM data_tables WHERE data_source_id = %s AND table_id = %s"
            + (" FOR UPDATE" if lock else ""),
            (ds.id, table_id),
        ).fetchone()
        return table_from_row(row) if row else None

    @staticmethod
    def _name_owner(conn: psycopg.Connection, ds: DataSource, name: str, table_id: str) -> str | None:
        row = conn.execute(
            "SELECT table_id FROM data_tables WHERE data_source_id = %s AND name = %s AND table_id <> %s",
            (ds.id, name, table_id),
        ).fetchone()
        return None if row is None else str(row[0])

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
        try:
            with self.engine.write() as conn:
                clash = self._name_owner(conn, ds, write.name, write.table_id)
                if clash is not None:
                    raise _name_taken(write.name, clash)
                row = conn.execute(
                    "INSERT INTO data_tables (name, title, description, mime_type, timestamp, tags, parents, "
                    "parent_id, source_url, remote_database_table_id, remote_database_secret_id, created, updated, "
                    "data_source_id, table_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (data_source_id, table_id) DO UPDATE SET name = excluded.name, "
                    "title = excluded.title, description = excluded.description, mime_type = excluded.mime_type, "
                    "timestamp = excluded.timestamp, tags = excluded.tags, parents = excluded.parents, "
                    "parent_id = excluded.parent_id, source_url = excluded.source_url, "
                    "remote_database_table_id = excluded.remote_database_table_id, "
                    "remote_database_secret_id = excluded.remote_database_secret_id, updated = excluded.updated "
                    f"RETURNING {TABLE_COLS}",
                    (*values, now, now, ds.id, write.table_id),
                ).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            # another writer took the name between our check and our write
            with self.engine.read() as conn:
                raise _name_taken(write.name, self._name_owner(conn, ds, write.name, write.table_id)) from exc
        assert row is not None
        return table_from_row(row)

    def get_table(self, ds: DataSource, table_id: str) -> Table | None:
        with self.engine.read() as conn:
            return self._table(conn, ds, table_id)

    def list_tables(self, ds: DataSource) -> list[Table]:
        with self.engine.read() as conn:
            cur = conn.execute(f"SELECT {TABLE_COLS} FROM data_tables WHERE data_source_id = %s ORDER BY id", (ds.id,))
            return [table_from_row(r) for r in cur.fetchall()]

    def delete_table(self, ds: DataSource, table_id: str) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute("DELETE FROM data_tables WHERE data_source_id = %s AND table_id = %s", (ds.id, table_id))
            return cur.rowcount > 0

    def update_table_parents(
        self, ds: DataSource, table_id: str, parents: Sequence[str], parent_id: str | None
    ) -> bool:
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE data_tables SET parents = %s, parent_id = %s, updated = %s WHERE data_source_id = %s "
                "AND table_id = %s",
                (_dumps(list(parents)), parent_id, rowmap.now_ms(), ds.id, table_id),
            )
            return cur.rowcount > 0

    # --- rows ----------------------------------------------------------------------------------------------------
    @staticmethod
    def _append_rows(conn: psycopg.Connection, table_pk: int, encoded: Sequence[tuple[str, str]]) -> None:
        """Append new ``(row_id, json)`` rows (ids in the given order) with COPY. The caller holds the table's row
        lock and knows none of the ids is stored yet."""
        if not encoded:
            return
        with conn.cursor().copy("COPY table_rows (table_pk, row_id, value) FROM STDIN") as copy:
            for row_id, value in encoded:
                copy.write_row((table_pk, row_id, value))

    @staticmethod
    def _replace_rows(conn: psycopg.Connection, table_pk: int, encoded: Sequence[tuple[str, str]]) -> None:
        """Replace the values of stored rows (they keep their place)."""
        if not encoded:
            return
        conn.cursor().execute(
            "UPDATE table_rows SET value = u.value::json FROM unnest(%s::text[], %s::text[]) AS u(row_id, value) "
            "WHERE table_rows.table_pk = %s AND table_rows.row_id = u.row_id",
            ([r for r, _ in encoded], [v for _, v in encoded], table_pk),
            binary=True,  # no text escaping of the arrays
        )

    def upsert_table_rows(self, ds: DataSource, table_id: str, rows: Sequence[TableRow], truncate: bool) -> Table:
        unique = dedupe_rows(list(rows))
        encoded = [(r.row_id, _dumps(r.value)) for r in unique]
        with self.engine.write() as conn:
            table = self._table(conn, ds, table_id, lock=True)
            if table is None:
                raise _not_found(table_id)
            schema = table.schema
            stale = table.schema_stale
            changed = True
            if truncate:
                conn.execute("DELETE FROM table_rows WHERE table_pk = %s", (table.pk,))
                self._append_rows(conn, table.pk, encoded)
                schema, stale = from_rows(r.value for r in unique), False
            else:
                existing: dict[str, str] = {
                    str(r[0]): str(r[1])
                    for r in conn.execute(
                        "SELECT row_id, value::text FROM table_rows WHERE table_pk = %s AND row_id = ANY(%s::text[])",
                        (table.pk, [row_id for row_id, _ in encoded]),
                    ).fetchall()
                }
                appended = [(row_id, value) for row_id, value in encoded if row_id not in existing]
                replacing = [(row_id, value) for row_id, value in encoded if existing.get(row_id, value) != value]
                self._append_rows(conn, table.pk, appended)
                self._replace_rows(conn, table.pk, replacing)
                replaced = bool(replacing)
                changed = bool(appended or replacing)
                if replaced:
                    stale = True
                elif not stale:
                    # only appended rows: continue the inference over them (exact, see tables/schema.py)
                    fresh: list[RowValue] = [r.value for r in unique if r.row_id not in existing]
                    schema = SchemaBuilder(schema or ()).add_rows(fresh).columns()
            row = conn.execute(
                "UPDATE data_tables SET schema = %s, schema_stale = %s, rows_version = rows_version + %s, "
                f"updated = %s WHERE id = %s RETURNING {TABLE_COLS}",
                (
                    _dumps(schema_to_json(schema)) if schema is not None else None,
                    stale,
                    int(changed),
                    rowmap.now_ms(),
                    table.pk,
                ),
            ).fetchone()
        assert row is not None
        return table_from_row(row)

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
            with conn.cursor("alexandria_schema_rows") as cur:
                cur.itersize = SCHEMA_BATCH
                cur.execute("SELECT value::text FROM table_rows WHERE table_pk = %s ORDER BY id", (table.pk,))
                for (value,) in cur:
                    builder.add_row(json.loads(value))
            schema = builder.columns()
        with self.engine.write() as conn:
            conn.execute(
                "UPDATE data_tables SET schema = %s, schema_stale = FALSE WHERE id = %s AND rows_version = %s "
                "AND schema_stale",
                (_dumps(schema_to_json(schema)), table.pk, table.rows_version),
            )
        return replace(table, schema=schema, schema_stale=False)

    def list_table_rows(self, ds: DataSource, table_id: str, limit: int, offset: int) -> tuple[list[TableRow], int]:
        with self.engine.snapshot() as conn:
            table = self._table(conn, ds, table_id)
            if table is None:
                raise _not_found(table_id)
            counted = conn.execute("SELECT count(*) FROM table_rows WHERE table_pk = %s", (table.pk,)).fetchone()
            total = int(counted[0]) if counted else 0
            cur = conn.execute(
                "SELECT row_id, value::text FROM table_rows WHERE table_pk = %s ORDER BY id LIMIT %s OFFSET %s",
                (table.pk, limit, offset),
            )
            found = [TableRow(str(r[0]), json.loads(r[1])) for r in cur.fetchall()]
        return found, total

    def get_table_row(self, ds: DataSource, table_id: str, row_id: str) -> TableRow | None:
        with self.engine.snapshot() as conn:
            table = self._table(conn, ds, table_id)
            if table is None:
                raise _not_found(table_id)
            row = conn.execute(
                "SELECT row_id, value::text FROM table_rows WHERE table_pk = %s AND row_id = %s", (table.pk, row_id)
            ).fetchone()
        return TableRow(str(row[0]), json.loads(row[1])) if row else None

    def delete_table_row(self, ds: DataSource, table_id: str, row_id: str) -> bool:
        with self.engine.write() as conn:
            table = self._table(conn, ds, table_id, lock=True)
            if table is None:
                raise _not_found(table_id)
            cur = conn.execute("DELETE FROM table_rows WHERE table_pk = %s AND row_id = %s", (table.pk, row_id))
            if cur.rowcount == 0:
                return False
            conn.execute(
                "UPDATE data_tables SET schema_stale = TRUE, rows_version = rows_version + 1, updated = %s "
                "WHERE id = %s",
                (rowmap.now_ms(), table.pk),
            )
        return True

    # --- SQL -----------------------------------------------------------------------------------------------------
    def _query_engine(self) -> PgQueryEngine:
        engine: PgQueryEngine | None = self.__dict__.get("_sql_engine")
        if engine is None:
            with _ENGINE_LOCK:
                engine = self.__dict__.get("_sql_engine")
                if engine is None:
                    engine = PgQueryEngine(self.engine.url)
                    self.__dict__["_sql_engine"] = engine
                    # the engine's connections are closed with the store (or when it is collected)
                    weakref.finalize(self, engine.close)
        return engine

    def query_tables(self, tables: Sequence[QueryTable], query: str, limits: QueryLimits) -> QueryResult:
        return self._query_engine().query(tables, query, limits)

    def close_sql_engine(self) -> None:
        """Close the SQL engine's connections (a next query starts a new engine, which checks the sandbox again)."""
        with _ENGINE_LOCK:
            engine: PgQueryEngine | None = self.__dict__.pop("_sql_engine", None)
        if engine is not None:
            engine.close()

    def close(self) -> None:
        """Close the SQL engine's connections, then the rest of the store (the next mixin's ``close``)."""
        self.close_sql_engine()
        parent = getattr(super(), "close", None)
        if parent is not None:
            parent()
