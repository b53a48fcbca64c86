"""Read-only SQL over tables, after Dust's ``sqlite_worker`` (dust-behaviour.md §4.3).

The requested tables are copied into a private in-memory SQLite database (typed columns: ``INT``, ``REAL``,
``TEXT``, ``BOOLEAN``; datetimes as ``'YYYY-MM-DD HH:MM:SS'`` text, booleans as 1/0), built straight from the
stored JSON rows by SQLite itself (a read-only connection to the store file copies them into it). Databases are
kept in a small LRU cache keyed by each table's primary key, rows version and exposed name, so any row write or
delete (which bumps the version) makes the next query build a fresh one. The database is SQLite's ``memdb`` VFS
under a random name, so that several connections of this process (one per query running on it) share the one copy.

The client's query then runs with:

- exactly one statement (``Query must contain a single statement``);
- an authorizer allowing only ``SELECT``, ``READ`` (of the exposed tables only), ``RECURSIVE`` and ``FUNCTION``
  (except ``load_extension`` and a few other unsafe ones): every write, ``ATTACH``, ``DETACH``, ``PRAGMA``, schema
  change or transaction statement is refused while the statement is prepared, before anything runs;
- ``PRAGMA query_only = 1``, ``SQLITE_LIMIT_ATTACHED = 0``, a 32 MiB cap on any string or blob, and
  ``SQLITE_DBCONFIG_DEFENSIVE`` where Python exposes it (``Connection.setconfig``, Python ≥ 3.12);
- a progress handler that interrupts it past the time limit, counted from the request's arrival
  (``query_timeout``);
- at most ``max_rows`` result rows (``too_many_result_rows``) and ``max_result_bytes`` of result text.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from alexandria.domain.tables import QueryLimits, QueryTable, RowValue, TableColumn
from alexandria.storage.query_cache import CachedDatabase, CachedEngine, CacheKey
from alexandria.storage.sqlite.db import quote_ident
from alexandria.tables.errors import QueryFailed, table_not_found
from alexandria.tables.schema import SchemaBuilder, schema_from_json

SQL_TYPES = {"int": "INT", "float": "REAL", "text": "TEXT", "bool": "BOOLEAN", "datetime": "TEXT"}
ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, 33})  # 33: RECURSIVE
DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "fts5"})
MAX_VALUE_BYTES = 32 * 1024 * 1024
EMPTY_COLUMN = "__empty__"
# SQLite VM steps between two checks of the deadline: each check takes the GIL, so a runaway query checking every
# 1,000 steps took it ~33,000 times a second and starved the server's other threads of it; 50,000 steps are ~1-3 ms
_PROGRESS_STEPS = 50_000
_ACTIONS = (
    "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER CREATE_TEMP_VIEW "
    "CREATE_TRIGGER CREATE_VIEW DELETE DROP_INDEX DROP_TABLE DROP_TEMP_INDEX DROP_TEMP_TABLE DROP_TEMP_TRIGGER "
    "DROP_TEMP_VIEW DROP_TRIGGER DROP_VIEW INSERT PRAGMA READ SELECT TRANSACTION UPDATE ATTACH DETACH ALTER_TABLE "
    "REINDEX ANALYZE CREATE_VTABLE DROP_VTABLE FUNCTION SAVEPOINT RECURSIVE"
).split()
_ACTION_NAMES = {int(getattr(sqlite3, f"SQLITE_{n}")): n for n in _ACTIONS if hasattr(sqlite3, f"SQLITE_{n}")}


def _datetime_expr(path_param: str) -> str:
    """SQL text of the ``'YYYY-MM-DD HH:MM:SS'`` rendering of the datetime object at a JSON path (seconds floored)."""
    epoch = f"json_extract(value, {path_param} || '.epoch')"
    return f"strftime('%Y-%m-%d %H:%M:%S', ({epoch} - ((({epoch} % 1000) + 1000) % 1000)) / 1000, 'unixepoch')"


class _Guard:
    """The authorizer and progress handler of one database; ``denied`` and ``timed_out`` tell why a query failed."""

    def __init__(self, tables: frozenset[str]) -> None:
        self.tables = tables
        self.denied: str | None = None
        self.deadline = 0.0
        self.timed_out = False

    def authorize(self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
        if action not in ALLOWED_ACTIONS:
            self.denied = self.denied or _ACTION_NAMES.get(action, str(action))
            return sqlite3.SQLITE_DENY
        # a READ without a database is of a common table expression; real tables must be the exposed ones
        if (
            action == sqlite3.SQLITE_READ
            and db is not None
            and (db != "main" or (arg1 or "").lower() not in self.tables)
        ):
            self.denied = self.denied or f"reading {arg1}"
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
            self.denied = self.denied or f"function {arg2}"
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def progress(self) -> int:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            return 1
        return 0


class _Reader:
    """One connection to a built database, with its own authorizer and progress handler."""

    def __init__(self, conn: sqlite3.Connection, tables: frozenset[str]) -> None:
        QueryEngine._lock_down(conn)
        self.conn = conn
        self.guard = _Guard(tables)
        conn.set_authorizer(self.guard.authorize)

    def close(self) -> None:
        self.conn.close()


class _Database(CachedDatabase[_Reader]):
    """A built database: an in-memory database of SQLite's ``memdb`` VFS, shared by the connections of this process
    that open its (random) name, so queries of the same tables each get a connection of their own and run side by
    side. It lives while one of them is open."""

    def __init__(self, key: CacheKey, uri: str, first: _Reader) -> None:
        super().__init__(key, first)
        self.uri = uri
        self.tables = first.guard.tables


class QueryEngine(CachedEngine[_Database, _Reader]):
    """Builds, caches and queries the in-memory databases of one store file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"

    @staticmethod
    def _open(uri: str) -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)

    # --- build ---------------------------------------------------------------------------------------------------
    def _build(self, tables: Sequence[QueryTable]) -> _Database:
        uri = f"file:/alexandria-sql-{secrets.token_hex(16)}?vfs=memdb"
        # copied by a read-only connection to the store, into the new database attached as ``q``
        conn = self._open(self.uri)
        try:
            conn.execute("ATTACH DATABASE ? AS q", (uri,))
            key: list[tuple[int, int, str]] = []
            conn.execute("BEGIN")
            try:
                for qt in tables:
                    key.append((qt.table.pk, self._copy_table(conn, qt), qt.name))
            finally:
                conn.execute("COMMIT")
            # the first query connection, which keeps the new database alive once the copier is closed
            reader = self._open(uri)
            try:
                first = _Reader(reader, frozenset(t.name.lower() for t in tables))
            except BaseException:
                reader.close()
                raise
        finally:
            conn.close()
        return _Database(tuple(sorted(key)), uri, first)

    def _connect(self, entry: _Database, tables: Sequence[QueryTable]) -> _Reader:
        conn = self._open(entry.uri)
        try:
            return _Reader(conn, entry.tables)
        except BaseException:
            conn.close()
            raise

    @staticmethod
    def _copy_table(conn: sqlite3.Connection, qt: QueryTable) -> int:
        """Create and fill the table ``qt.name``; returns the rows version copied."""
        row = conn.execute(
            "SELECT rows_version, schema, schema_stale FROM main.data_tables WHERE id = ?", (qt.table.pk,)
        ).fetchone()
        if row is None:
            raise table_not_found(qt.table.table_id)
        version = int(row[0])
        if row[2]:
            builder = SchemaBuilder()
            for (value,) in conn.execute(
                "SELECT value FROM main.table_rows WHERE table_pk = ? ORDER BY id", (qt.table.pk,)
            ):
                builder.add_row(json.loads(value))
            columns: Sequence[TableColumn] = builder.columns()
        else:
            columns = schema_from_json(json.loads(row[1]) if row[1] is not None else None) or ()
        name = quote_ident(qt.name)
        if not columns:
            conn.execute(f"CREATE TABLE q.{name} ({quote_ident(EMPTY_COLUMN)} INT)")
            return version
        defs = ", ".join(f"{quote_ident(c.name)} {SQL_TYPES[c.value_type]}" for c in columns)
        conn.execute(f"CREATE TABLE q.{name} ({defs})")
        exprs: list[str] = []
        params: list[object] = []
        for c in columns:
            path = '$."' + c.name.replace('"', '\\"') + '"'
            if c.value_type in ("text", "datetime"):
                exprs.append(
                    f"CASE json_type(value, ?) WHEN 'object' THEN {_datetime_expr('?')} ELSE json_extract(value, ?) END"
                )
                params += [path, path, path, path]
            else:
                exprs.append("json_extract(value, ?)")
                params.append(path)
        conn.execute(
            f"INSERT INTO q.{name} ({', '.join(quote_ident(c.name) for c in columns)}) "
            f"SELECT {', '.join(exprs)} FROM main.table_rows WHERE table_pk = ? ORDER BY id",
            (*params, qt.table.pk),
        )
        return version

    @staticmethod
    def _lock_down(conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA query_only = 1")
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        conn.setlimit(sqlite3.SQLITE_LIMIT_WORKER_THREADS, 0)
        setconfig = getattr(conn, "setconfig", None)
        defensive = getattr(sqlite3, "SQLITE_DBCONFIG_DEFENSIVE", None)
        if setconfig is not None and defensive is not None:
            setconfig(defensive, True)

    def _load_error(self, exc: Exception) -> str | None:
        return str(exc) if isinstance(exc, sqlite3.Error) else None  # e.g. a table name SQLite reserves

    # --- query ---------------------------------------------------------------------------------------------------
    def _run(self, entry: _Database, reader: _Reader, query: str, limits: QueryLimits) -> list[RowValue]:
        conn, guard = reader.conn, reader.guard
        guard.denied = None
        guard.timed_out = False
        guard.deadline = time.monotonic() + limits.time_left()
        conn.set_progress_handler(guard.progress, _PROGRESS_STEPS)
        cur: sqlite3.Cursor | None = None
        try:
            cur = conn.execute(query)
            if cur.description is None:  # nothing (empty, only comments) or a statement that returns no rows
                raise QueryFailed.not_a_select()
            names = [str(d[0]) for d in cur.description]
            fetched = cur.fetchmany(limits.max_rows + 1)
            if len(fetched) > limits.max_rows:
                raise QueryFailed.too_many_rows(limits.max_rows)
            return _to_rows(names, fetched, limits.max_result_bytes)
        except (sqlite3.ProgrammingError, sqlite3.Warning) as exc:
            if "one statement" in str(exc):
                raise QueryFailed.not_single_statement() from exc
            raise QueryFailed.error(exc) from exc
        except sqlite3.Error as exc:
            if guard.timed_out:
                raise QueryFailed.timed_out(limits.timeout_ms) from exc
            if guard.denied is not None:
                raise QueryFailed.not_read_only(guard.denied) from exc
            raise QueryFailed.error(exc) from exc
        finally:
            if cur is not None:
                cur.close()
            conn.set_progress_handler(None, 0)


def _to_rows(names: list[str], fetched: list[tuple[object, ...]], max_bytes: int) -> list[RowValue]:
    out: list[RowValue] = []
    size = 0
    for record in fetched:
        value: RowValue = {}
        for name, cell in zip(names, record, strict=True):
            if isinstance(cell, bytes):
                try:
                    cell = cell.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise QueryFailed.blob_not_utf8(name) from exc
            if isinstance(cell, float) and (cell != cell or cell in (float("inf"), float("-inf"))):
                cell = None  # JSON has no NaN or infinity (serde_json writes them as null)
            if isinstance(cell, str):
                size += len(cell)
            elif cell is not None and not isinstance(cell, int | float):
                raise QueryFailed.execution(f"Column `{name}` holds an unsupported value.")
            value[name] = cell
        size += 8 * len(names)
        if size > max_bytes:
            raise QueryFailed.too_large(max_bytes)
        out.append(value)
    return out
