"""Read-only SQL over tables on PostgreSQL: the twin of ``storage/sqlite/sql.py`` (dust-behaviour.md §4.3), with the
same results and the same error codes.

**Data.** The requested tables are copied, by the server itself from the stored JSON rows, into temporary tables of a
connection kept for them (typed columns: ``bigint``, ``double precision``, ``text``, ``boolean``; datetimes as
``timestamp`` in UTC, seconds floored; a datetime in a text column as ``'YYYY-MM-DD HH:MM:SS'`` and a boolean as
``'1'``/``'0'``, as SQLite writes them). Those connections are cached, keyed by each table's primary key, rows
version and exposed name, so any row write or delete makes the next query build a fresh one; a query that finds all
of them busy builds another (queries of the same tables run side by side). The temporary tables and
their columns have opaque names (a random prefix, ``c0``, ``c1``…): other sessions can list the relations of
``pg_class``, and must learn nothing from it.

**Sandbox.** The application connects as a privileged user (the owner of the schema, a superuser for the embedded
server), so each query runs in a transaction that is rolled back afterwards, set up as follows:

- the exposed names are *views* over the temporary tables, created in that transaction (so never visible to another
  session), with ``SELECT`` granted to the role ``alexandria_sql`` and nothing else (no ``INSERT``, no ``FOR
  UPDATE``); a name with upper-case letters is also exposed in lower case, as PostgreSQL folds unquoted names;
- ``statement_timeout`` (what is left of the time limit, counted from the request's arrival: ``query_timeout``),
  ``temp_file_limit``, ``work_mem``, ``TimeZone = UTC``, ``search_path = pg_temp, pg_catalog`` and
  ``transaction_read_only`` are set for the transaction, then ``SET LOCAL ROLE alexandria_sql``: a role that cannot log
  in, holds no privilege on any table of the database, cannot read files (``pg_read_file``, ``lo_import``, ``COPY ... TO
  PROGRAM`` need privileges it lacks), and cannot call ``set_config`` (revoked from PUBLIC by the migration). ``SET
  ROLE`` alone is no boundary: PostgreSQL checks the *session* user's memberships, so as statements ``SET ROLE
  postgres``, ``RESET ROLE`` or ``SET SESSION AUTHORIZATION`` (or a ``DO`` block running them) switch back; and within a
  SELECT, ``set_config('role', 'none', true)`` does the same, after which ``ts_stat('<any SQL>')`` runs SQL as the
  session user. The revoke closes the second way; the next point, the first;
- the client's text is sent only as ``DECLARE ... CURSOR FOR <query>`` over the extended protocol: a single statement
  (``Query must contain a single statement``), and one that PostgreSQL's grammar accepts only for ``SELECT``,
  ``VALUES``, ``TABLE`` and ``WITH`` without data-modifying parts: ``DO``, ``SET``, ``RESET``, ``COPY``, DDL, DML,
  ``CALL``, ``EXPLAIN`` or ``SHOW`` are parse errors, mapped to "Query must be read-only…", and never execute;
- rows are fetched from the cursor one at a time (``max_rows + 1`` at most: ``too_many_result_rows``), stopping at
  ``max_result_bytes`` of result text; session advisory locks the query may have taken are released afterwards.

Before using a new connection, the engine checks that the role is locked down as described (no privilege on any
relation, no ``set_config``, no membership, no ``SECURITY DEFINER`` function it could call) and refuses to run queries
otherwise.

Results match SQLite's: booleans come back as ``1``/``0``, ``numeric`` as an integer when it has no fractional digits
(``sum`` of integers) and as a float otherwise (``avg``), timestamps as ``'YYYY-MM-DD HH:MM:SS'``, non-finite
floats as ``null``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import secrets
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from alexandria.domain.tables import QueryLimits, QueryTable, RowValue, TableColumn
from alexandria.storage import rows as rowmap
from alexandria.storage.query_cache import CachedDatabase, CachedEngine, CacheKey
from alexandria.tables.errors import QueryFailed, table_not_found
from alexandria.tables.schema import I64_MAX, I64_MIN, SchemaBuilder, schema_from_json

SANDBOX_ROLE = "alexandria_sql"
SQL_TYPES = {"int": "bigint", "float": "double precision", "text": "text", "bool": "boolean", "datetime": "timestamp"}
EMPTY_COLUMN = "__empty__"
CURSOR = "alexandria_query"
TEMP_FILE_LIMIT = "1GB"
WORK_MEM = "64MB"
# statements PostgreSQL parses but that a cursor cannot hold: named in the "not allowed" message
STATEMENT_KEYWORDS = frozenset(
    "ABORT ALTER ANALYSE ANALYZE ATTACH BEGIN CALL CHECKPOINT CLOSE CLUSTER COMMENT COMMIT COPY CREATE DEALLOCATE "
    "DECLARE DELETE DETACH DISCARD DO DROP END EXECUTE EXPLAIN FETCH GRANT IMPORT INSERT LISTEN LOAD LOCK MERGE MOVE "
    "NOTIFY PRAGMA PREPARE REASSIGN REFRESH REINDEX RELEASE REPLACE RESET REVOKE ROLLBACK SAVEPOINT SECURITY SET SHOW "
    "START TRUNCATE UNLISTEN UPDATE VACUUM".split()
)
# loaded as PostgreSQL's own text (ISO dates, intervals, JSON as written) rather than as Python objects
TEXT_TYPES = ("date", "time", "timetz", "timestamp", "timestamptz", "interval", "json", "jsonb", "uuid")
# the transaction's settings, as the application's user (the role cannot change them afterwards)
SANDBOX_SETTINGS = (
    f"SET LOCAL temp_file_limit = '{TEMP_FILE_LIMIT}'; SET LOCAL work_mem = '{WORK_MEM}'; SET LOCAL TimeZone = 'UTC'; "
    "SET LOCAL DateStyle = ISO, YMD; SET LOCAL IntervalStyle = postgres; SET LOCAL search_path = pg_temp, pg_catalog; "
    "SET LOCAL transaction_read_only = on"
)
# PostgreSQL's messages for unknown names, written as SQLite writes them ("no such table: x")
_NO_SUCH = (
    (re.compile(r'^relation "(.*)" does not exist$'), "table"),
    (re.compile(r'^column "(.*)" does not exist$'), "column"),
    (re.compile(r"^function (.*?)\(.*\) does not exist$"), "function"),
)
_WORD = re.compile(r"[A-Za-z_]+")


def _connect(url: str) -> psycopg.Connection:
    """A connection of its own (never one of the store's pool): its session holds the temporary tables."""
    conn = psycopg.connect(url, autocommit=True, prepare_threshold=None, connect_timeout=10)
    for name in TEXT_TYPES:
        conn.adapters.register_loader(name, TextLoader)
    return conn


# --- copying rows into typed columns -----------------------------------------------------------------------------
_SECONDS = "to_timestamp(floor((v -> %s ->> 'epoch')::numeric / 1000)) AT TIME ZONE 'UTC'"


def _column_expr(column: TableColumn) -> tuple[str, list[object]]:
    """SQL (over ``v``, a row as ``jsonb``) of a column's typed value, and its parameters."""
    key = column.name
    if column.value_type == "int":
        return "(v ->> %s)::bigint", [key]
    if column.value_type == "float":
        return "(v ->> %s)::double precision", [key]
    if column.value_type == "bool":
        return "(v ->> %s)::boolean", [key]
    if column.value_type == "datetime":
        return f"({_SECONDS})", [key]
    # text, or a mix: datetimes and booleans written as SQLite writes them into a TEXT column
    return (
        f"CASE jsonb_typeof(v -> %s) WHEN 'object' THEN to_char({_SECONDS}, 'YYYY-MM-DD HH24:MI:SS') "
        "WHEN 'boolean' THEN CASE WHEN (v ->> %s)::boolean THEN '1' ELSE '0' END ELSE v ->> %s END",
        [key, key, key, key],
    )


@dataclass(frozen=True)
class _Exposed:
    """A table of a cached database: its temporary table and columns, and the names queries see."""

    name: str
    temp: str
    columns: tuple[str, ...]  # exposed column names; the temporary table's are c0, c1...


class _Database(CachedDatabase[psycopg.Connection]):
    """The cached copies of one set of tables: each of its connections holds its own temporary tables (another
    connection is built, with the same names, when all are busy)."""

    def __init__(self, key: CacheKey, conn: psycopg.Connection, tables: tuple[_Exposed, ...]) -> None:
        super().__init__(key, conn)
        self.tables = tables


class PgQueryEngine(CachedEngine[_Database, psycopg.Connection]):
    """Builds, caches and queries the sandboxed copies of tables of one PostgreSQL database."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._prefix = f"alexandria_{secrets.token_hex(8)}_"

    # --- the sandbox role ----------------------------------------------------------------------------------------
    @staticmethod
    def sandbox_problems(conn: psycopg.Connection) -> list[str]:
        """Why queries would not be confined by the role ``alexandria_sql`` in this database (empty: they would)."""
        row = conn.execute(
            "SELECT r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolbypassrls OR r.rolreplication, "
            "r.rolcanlogin, "
            "EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid), "
            "has_function_privilege(r.oid, 'pg_catalog.set_config(text, text, boolean)', 'EXECUTE'), "
            "(SELECT string_agg(n.nspname || '.' || c.relname, ', ' ORDER BY n.nspname, c.relname) FROM pg_class c "
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relpersistence <> 't' "
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND CASE WHEN c.relkind = 'S' "
            " THEN has_sequence_privilege(r.oid, c.oid, 'USAGE, SELECT, UPDATE') "
            " WHEN c.relkind IN ('r', 'v', 'm', 'p', 'f') "
            " THEN has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') "
            " ELSE FALSE END), "
            "(SELECT string_agg(p.oid::regprocedure::text, ', ') FROM pg_proc p "
            " WHERE p.prosecdef AND has_function_privilege(r.oid, p.oid, 'EXECUTE')), "
            "has_database_privilege(r.oid, current_database(), 'TEMPORARY'), "
            "pg_has_role(current_user, r.oid, 'USAGE') OR pg_has_role(current_user, r.oid, 'SET') "
            "FROM pg_roles r WHERE r.rolname = %s",
            (SANDBOX_ROLE,),
        ).fetchone()
        if row is None:
            return [f"the role {SANDBOX_ROLE} does not exist"]
        privileged, login, member, set_config, relations, definers, temporary, switchable = row
        problems = []
        if privileged:
            problems.append(f"{SANDBOX_ROLE} has role attributes (superuser, createrole, createdb, bypassrls…)")
        if login:
            problems.append(f"{SANDBOX_ROLE} can log in")
        if member:
            problems.append(f"{SANDBOX_ROLE} is a member of another role")
        if set_config:
            problems.append(f"{SANDBOX_ROLE} can execute set_config")
        if relations:
            problems.append(f"{SANDBOX_ROLE} has privileges on {relations}")
        if definers:
            problems.append(f"{SANDBOX_ROLE} can execute SECURITY DEFINER functions: {definers}")
        if not temporary:
            problems.append(f"{SANDBOX_ROLE} lacks the TEMPORARY privilege on the database")
        if not switchable:
            problems.append(f"the application's user cannot SET ROLE {SANDBOX_ROLE}")
        return problems

    def _check(self, conn: psycopg.Connection) -> None:
        """Refuse to go on unless the role is locked down (checked on every new connection: a few ms)."""
        problems = self.sandbox_problems(conn)
        if problems:
            raise QueryFailed.execution(
                "SQL over tables is disabled: the database's query sandbox is not locked down ("
                + "; ".join(problems)
                + "). Apply the PostgreSQL migrations as a superuser.",
            )

    # --- build ---------------------------------------------------------------------------------------------------
    def _copy(self, tables: Sequence[QueryTable]) -> tuple[CacheKey, psycopg.Connection, tuple[_Exposed, ...]]:
        """A new connection holding copies of ``tables``, the key of the rows versions copied, and what it exposes."""
        conn = _connect(self.url)
        try:
            self._check(conn)
            key: list[tuple[int, int, str]] = []
            exposed: list[_Exposed] = []
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                for i, qt in enumerate(tables):
                    version, table = self._copy_table(conn, qt, f"{self._prefix}{i}")
                    key.append((qt.table.pk, version, qt.name))
                    exposed.append(table)
        except BaseException:
            conn.close()
            raise
        return tuple(sorted(key)), conn, tuple(exposed)

    def _build(self, tables: Sequence[QueryTable]) -> _Database:
        key, conn, exposed = self._copy(tables)
        return _Database(key, conn, exposed)

    def _connect(self, entry: _Database, tables: Sequence[QueryTable]) -> psycopg.Connection | None:
        key, conn, exposed = self._copy(tables)
        if key != entry.key or exposed != entry.tables:  # rows written since: this copy is of newer versions
            conn.close()
            return None
        return conn

    @staticmethod
    def _copy_table(conn: psycopg.Connection, qt: QueryTable, temp: str) -> tuple[int, _Exposed]:
        """Create and fill the temporary table ``temp`` from ``qt``'s rows; returns the rows version copied."""
        row = conn.execute(
            "SELECT rows_version, schema, schema_stale FROM data_tables WHERE id = %s", (qt.table.pk,)
        ).fetchone()
        if row is None:
            raise table_not_found(qt.table.table_id)
        version = int(row[0])
        if row[2]:
            builder = SchemaBuilder()
            with conn.cursor("alexandria_copy_schema") as cur:
                cur.itersize = 2000
                cur.execute("SELECT value::text FROM table_rows WHERE table_pk = %s ORDER BY id", (qt.table.pk,))
                for (value,) in cur:
                    builder.add_row(json.loads(value))
            columns: Sequence[TableColumn] = builder.columns()
        else:
            columns = schema_from_json(rowmap.js(row[1])) or ()
        if not columns:
            conn.execute(sql.SQL("CREATE TEMP TABLE {} (c0 bigint)").format(sql.Identifier(temp)))
            return version, _Exposed(qt.name, temp, (EMPTY_COLUMN,))
        slots = [sql.Identifier(f"c{i}") for i in range(len(columns))]
        defs = sql.SQL(", ").join(
            sql.SQL("{} {}").format(slot, sql.SQL(SQL_TYPES[c.value_type]))
            for slot, c in zip(slots, columns, strict=True)
        )
        conn.execute(sql.SQL("CREATE TEMP TABLE {} ({})").format(sql.Identifier(temp), defs))
        exprs: list[str] = []
        params: list[object] = []
        for c in columns:
            expr, args = _column_expr(c)
            exprs.append(expr)
            params += args
        # OFFSET 0 keeps the subquery: inlined, each column would parse the row's JSON again
        conn.execute(
            sql.SQL(
                "INSERT INTO {} ({}) SELECT {} FROM (SELECT value::jsonb AS v, id FROM table_rows WHERE table_pk = %s "
                "OFFSET 0) AS r ORDER BY r.id"
            ).format(sql.Identifier(temp), sql.SQL(", ").join(slots), sql.SQL(", ".join(exprs))),
            (*params, qt.table.pk),
        )
        # statistics for the planner (temporary tables are never analysed automatically); the sandbox role cannot
        # read them: it holds no privilege on this table, only on the views of each query
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(temp)))
        return version, _Exposed(qt.name, temp, tuple(c.name for c in columns))

    def _load_error(self, exc: Exception) -> str | None:
        return _message(exc) if isinstance(exc, psycopg.Error) else None

    def _connection_lost(self, conn: psycopg.Connection, exc: Exception) -> bool:
        return isinstance(exc, psycopg.Error)

    # --- query ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _setup(entry: _Database, limits: QueryLimits) -> sql.Composed:
        """The statements that open the sandbox of one query (run in its transaction, before the client's text)."""
        parts: list[sql.Composable] = []
        role = sql.Identifier(SANDBOX_ROLE)
        for table in entry.tables:
            names = [table.name] if table.name == table.name.lower() else [table.name, table.name.lower()]
            columns = sql.SQL(", ").join(
                sql.SQL("{} AS {}").format(sql.Identifier(f"c{i}"), sql.Identifier(name))
                for i, name in enumerate(table.columns)
            )
            for name in names:
                view = sql.Identifier("pg_temp", name)
                parts.append(
                    sql.SQL("CREATE TEMP VIEW {} AS SELECT {} FROM {}").format(
                        view, columns, sql.Identifier("pg_temp", table.temp)
                    )
                )
                parts.append(sql.SQL("GRANT SELECT ON {} TO {}").format(view, role))
        # what is left of the time limit, counted from the request's arrival
        timeout = sql.Literal(max(int(limits.time_left() * 1000), 1))
        parts.append(sql.SQL("SET LOCAL statement_timeout = {}").format(timeout))
        parts.append(sql.SQL(SANDBOX_SETTINGS))
        parts.append(sql.SQL("SET LOCAL ROLE {}").format(role))
        return sql.SQL("; ").join(parts)

    def _run(self, entry: _Database, conn: psycopg.Connection, query: str, limits: QueryLimits) -> list[RowValue]:
        prefix = f"DECLARE {CURSOR} NO SCROLL CURSOR FOR "
        if "\x00" in query:  # libpq would cut the text there
            raise QueryFailed.error("the query contains a null character")
        try:
            text = (prefix + query).encode()
        except UnicodeEncodeError as exc:
            raise QueryFailed.error(exc.reason) from exc
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(self._setup(entry, limits))
                cur = conn.cursor()
                # binary=True makes psycopg use the extended protocol, which refuses more than one statement (the
                # simple protocol, used for a query without parameters, would run them all)
                cur.execute(text, binary=True)
                return _fetch(cur, limits)
        except QueryFailed:
            raise
        except psycopg.errors.QueryCanceled as exc:
            raise QueryFailed.timed_out(limits.timeout_ms) from exc
        except (psycopg.errors.SyntaxError, psycopg.errors.FeatureNotSupported) as exc:
            raise _refusal(query, len(prefix), exc) from exc
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction) as exc:
            raise QueryFailed.execution(
                f"Query must be read-only and use only the given tables: {_message(exc)}."
            ) from exc
        except psycopg.Error as exc:
            if conn.broken or conn.closed:  # the connection is gone, not the query's fault
                raise
            # the rest, from a bad cast to temp_file_limit: the query's own errors
            raise QueryFailed.error(_detail(exc)) from exc
        finally:
            if not conn.closed:
                # a query can take session advisory locks (pg_advisory_lock): they outlive the transaction
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock_all()")


def _message(exc: psycopg.Error) -> str:
    primary = exc.diag.message_primary if exc.diag is not None else None
    return primary or (str(exc).splitlines() or [type(exc).__name__])[0]


def _detail(exc: psycopg.Error) -> str:
    message = _message(exc)
    for pattern, kind in _NO_SUCH:
        found = pattern.match(message)
        if found:
            return f"no such {kind}: {found.group(1)}"
    return message


def _skip_blank(text: str, at: int = 0) -> int:
    """The index of the first character at or after ``at`` that is not blank, a comment or a semicolon."""
    n = len(text)
    while at < n:
        if text[at].isspace() or text[at] == ";":
            at += 1
        elif text.startswith("--", at):
            end = text.find("\n", at)
            at = n if end < 0 else end + 1
        elif text.startswith("/*", at):
            depth, at = 1, at + 2
            while at < n and depth:
                if text.startswith("/*", at):
                    depth, at = depth + 1, at + 2
                elif text.startswith("*/", at):
                    depth, at = depth - 1, at + 2
                else:
                    at += 1
        else:
            break
    return at


def _refusal(query: str, offset: int, exc: psycopg.Error) -> QueryFailed:
    """The error of a query the cursor's grammar refused: several statements, none, a statement that is not a
    read-only query (named by the keyword PostgreSQL stopped at), or a plain syntax error."""
    message = _message(exc)
    if "cannot insert multiple commands" in message:
        return QueryFailed.not_single_statement()
    if _skip_blank(query) >= len(query):
        return QueryFailed.not_a_select()
    if isinstance(exc, psycopg.errors.FeatureNotSupported) and "data-modifying" in message:
        return QueryFailed.not_read_only("a data-modifying WITH")
    position = exc.diag.statement_position if exc.diag is not None else None
    if position is not None and position.isdigit():
        word = _WORD.match(query, max(int(position) - 1 - offset, 0))
        if word is not None and word.group(0).upper() in STATEMENT_KEYWORDS:
            return QueryFailed.not_read_only(word.group(0).upper())
    return QueryFailed.error(_detail(exc))


def _fetch(cur: psycopg.Cursor[Any], limits: QueryLimits) -> list[RowValue]:
    """At most ``max_rows`` rows of the open cursor, converted; row by row, so that a huge result stops early."""
    out: list[RowValue] = []
    size = 0
    names: list[str] | None = None
    # a generator: closing it early cancels the rest of the fetch
    stream = cast(Generator[Any, None, None], cur.stream(f"FETCH FORWARD {int(limits.max_rows) + 1} FROM {CURSOR}"))
    try:
        for record in stream:
            if len(out) >= limits.max_rows:
                raise QueryFailed.too_many_rows(limits.max_rows)
            if names is None:
                names = [str(d.name) for d in cur.description or ()]
            value: RowValue = {}
            for name, cell in zip(names, record, strict=True):
                converted = _cell(name, cell)
                if isinstance(converted, str):
                    size += len(converted)
                value[name] = converted
            size += 8 * len(names)
            if size > limits.max_result_bytes:
                raise QueryFailed.too_large(limits.max_result_bytes)
            out.append(value)
    finally:
        stream.close()  # cancels the rest of the fetch if we stopped early
    return out


def _cell(name: str, cell: object) -> Any:
    """A result value as SQLite's engine returns the same value (see the module docstring)."""
    if cell is None or isinstance(cell, str):
        return cell
    if isinstance(cell, bool):
        return int(cell)
    if isinstance(cell, int):
        return cell
    if isinstance(cell, float):
        return None if cell != cell or cell in (float("inf"), float("-inf")) else cell
    if isinstance(cell, Decimal):
        if not cell.is_finite():
            return None
        exponent = cell.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0 and I64_MIN <= cell <= I64_MAX:
            return int(cell)
        as_float = float(cell)
        return None if as_float in (float("inf"), float("-inf")) else as_float
    if isinstance(cell, bytes | bytearray | memoryview):
        try:
            return bytes(cell).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise QueryFailed.blob_not_utf8(name) from exc
    if isinstance(cell, list | tuple | dict):
        return json.dumps(_plain(cell), ensure_ascii=False, separators=(",", ":"))
    if isinstance(cell, dt.date | dt.time | dt.timedelta | uuid.UUID):
        return str(cell)
    return str(cell)


def _plain(value: object) -> object:
    """``value`` (an array or record) with its items made JSON-serialisable."""
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    converted = _cell("", value)
    return converted
