"""The read-only SQL engine over tables: every way out of the sandbox is tried and must be refused, and stored rows
must be unchanged afterwards (dust-behaviour.md §4.3).

The module runs on both backends. Tests of SQLite's own machinery (its authorizer, ``ATTACH``, ``sqlite_master``,
``typeof``, blobs) are marked sqlite-only, each next to its PostgreSQL counterpart (marked postgres-only): the
sandbox's role, ``pg_catalog``, ``information_schema``, ``SET ROLE``, ``COPY``, server files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alexandria.domain.models import DataSource
from alexandria.domain.tables import TableRow
from alexandria.services.core import Core
from alexandria.services.tables import TableRef, TableUpsert
from alexandria.storage.postgres.sql import SANDBOX_ROLE, PgQueryEngine
from alexandria.tables.errors import QueryFailed, TableNotFound
from tests.conftest import Tenant, make_tenant

pytestmark = [pytest.mark.backends("sqlite", "postgres")]

ROWS = [
    TableRow(
        "1", {"name": "John", "amount": 129, "score": 1.5, "paying": True, "at": {"type": "datetime", "epoch": 0}}
    ),
    TableRow("2", {"name": "Mark", "amount": 3, "score": 2, "paying": False, "at": None}),
    TableRow("3", {"name": "Sally", "amount": 456, "score": 0.25, "paying": True, "mixed": "x"}),
    TableRow("4", {"name": "Ann", "mixed": 7, "at": {"type": "datetime", "epoch": 1700000000999}}),
]


def make_table(core: Core, ds: DataSource, table_id: str = "t1", name: str = "customers") -> None:
    core.tables.upsert(ds, TableUpsert(name=name, description="d", table_id=table_id), 0)
    core.tables.upsert_rows(ds, table_id, ROWS, truncate=False)


@pytest.fixture
def table(core: Core, tenant: Tenant) -> DataSource:
    make_table(core, tenant.ds)
    return tenant.ds


def query(core: Core, ds: DataSource, sql: str, table_id: str = "t1") -> list[dict[str, Any]]:
    return core.tables.query([TableRef(ds, table_id)], sql).rows


def stored(core: Core, ds: DataSource) -> list[TableRow]:
    return core.tables.list_rows(ds, "t1", 100, 0)[0]


def refused(core: Core, ds: DataSource, sql: str, code: str = "query_execution_error") -> str:
    before = stored(core, ds)
    with pytest.raises(QueryFailed) as info:
        query(core, ds, sql)
    assert info.value.code == code, info.value.message
    assert stored(core, ds) == before
    # the cached database is intact too
    assert query(core, ds, "SELECT count(*) AS n FROM customers") == [{"n": 4}]
    return info.value.message


@pytest.mark.backends("sqlite")  # typeof and rowid are SQLite's; PostgreSQL: test_typed_columns_postgres
def test_typed_columns(core: Core, table: DataSource) -> None:
    rows = query(
        core,
        table,
        "SELECT name, amount, typeof(amount) AS ta, score, typeof(score) AS ts, paying, typeof(paying) AS tp, at, "
        "mixed, typeof(mixed) AS tm FROM customers ORDER BY rowid",
    )
    assert rows[0] == {
        "name": "John", "amount": 129, "ta": "integer", "score": 1.5, "ts": "real", "paying": 1, "tp": "integer",
        "at": "1970-01-01 00:00:00", "mixed": None, "tm": "null",
    }  # fmt: skip
    assert rows[1]["score"] == 2.0 and rows[1]["ts"] == "real"  # an int in a REAL (float) column
    assert rows[1]["paying"] == 0
    assert rows[2]["mixed"] == "x" and rows[3]["mixed"] == "7" and rows[3]["tm"] == "text"  # text column
    assert rows[3]["at"] == "2023-11-14 22:13:20"


def test_result_schema_and_aggregate(core: Core, table: DataSource) -> None:
    result = core.tables.query(
        [TableRef(table, "t1")],
        "SELECT paying, count(*) AS n, sum(amount) AS total, avg(score) AS mean FROM customers "
        "WHERE paying IS NOT NULL GROUP BY paying ORDER BY paying",
    )
    assert result.rows == [
        {"paying": 0, "n": 1, "total": 3, "mean": 2.0},
        {"paying": 1, "n": 2, "total": 585, "mean": 0.875},
    ]
    assert [(c.name, c.value_type, c.possible_values) for c in result.columns] == [
        ("paying", "int", ("0", "1")),
        ("n", "int", ("1", "2")),
        ("total", "int", ("3", "585")),
        ("mean", "float", ("2.0", "0.875")),
    ]


@pytest.mark.backends("postgres")
def test_typed_columns_postgres(core: Core, table: DataSource) -> None:
    rows = query(
        core,
        table,
        "SELECT name, amount, pg_typeof(amount)::text AS ta, score, pg_typeof(score)::text AS ts, paying, "
        "pg_typeof(paying)::text AS tp, at, pg_typeof(at)::text AS tat, mixed, pg_typeof(mixed)::text AS tm "
        "FROM customers",
    )
    assert rows[0] == {
        "name": "John", "amount": 129, "ta": "bigint", "score": 1.5, "ts": "double precision", "paying": 1,
        "tp": "boolean", "at": "1970-01-01 00:00:00", "tat": "timestamp without time zone", "mixed": None, "tm": "text",
    }  # fmt: skip
    assert rows[1]["score"] == 2.0 and rows[1]["paying"] == 0  # an int in a float column; booleans as 1/0
    assert rows[2]["mixed"] == "x" and rows[3]["mixed"] == "7"  # text column
    assert rows[3]["at"] == "2023-11-14 22:13:20"  # seconds floored, as on SQLite
    # datetimes are timestamps: date arithmetic works, results are written like SQLite's text
    assert query(
        core, table, "SELECT max(at) + interval '1 day' AS d, date_trunc('month', max(at)) AS m FROM customers"
    ) == [{"d": "2023-11-15 22:13:20", "m": "2023-11-01 00:00:00"}]


def test_same_results_on_both_backends(core: Core, table: DataSource) -> None:
    """Portable SQL gives the same rows (same values, same JSON types) on either backend."""
    make_table(core, table, "t2", "orders")
    refs = [TableRef(table, "t1"), TableRef(table, "t2")]
    cases: dict[str, list[dict[str, Any]]] = {
        "SELECT name, amount, score, paying, at FROM customers WHERE at IS NOT NULL ORDER BY name": [
            {"name": "Ann", "amount": None, "score": None, "paying": None, "at": "2023-11-14 22:13:20"},
            {"name": "John", "amount": 129, "score": 1.5, "paying": 1, "at": "1970-01-01 00:00:00"},
        ],
        "SELECT name FROM customers WHERE name LIKE '%n%' AND at >= '1970-01-01' ORDER BY name": [
            {"name": "Ann"},
            {"name": "John"},
        ],
        "SELECT name FROM customers WHERE name LIKE 'S%' OR mixed = '7' ORDER BY 1": [
            {"name": "Ann"},
            {"name": "Sally"},
        ],
        "SELECT count(*) AS n, sum(amount) AS s, min(score) AS lo, max(at) AS last, avg(amount) AS mean "
        "FROM customers": [{"n": 4, "s": 588, "lo": 0.25, "last": "2023-11-14 22:13:20", "mean": 196.0}],
        "SELECT amount > 100 AS big, count(*) AS n FROM customers WHERE amount IS NOT NULL GROUP BY amount > 100 "
        "ORDER BY big": [{"big": 0, "n": 1}, {"big": 1, "n": 2}],
        "SELECT c.name, o.amount FROM customers c JOIN orders o ON o.name = c.name WHERE c.paying ORDER BY c.name": [
            {"name": "John", "amount": 129},
            {"name": "Sally", "amount": 456},
        ],
        "SELECT coalesce(mixed, 'none') AS m, length(name) AS l FROM customers ORDER BY name LIMIT 2": [
            {"m": "7", "l": 3},
            {"m": "none", "l": 4},
        ],
        "SELECT CASE WHEN paying THEN 'yes' ELSE 'no' END AS p, 1.5 * 2 AS x, 7 / 2 AS d FROM customers "
        "WHERE name = 'Mark'": [{"p": "no", "x": 3.0, "d": 3}],
    }
    for sql, expected in cases.items():
        assert core.tables.query(refs, sql).rows == expected, sql


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO customers (name) VALUES ('x')",
        "UPDATE customers SET amount = 0",
        "DELETE FROM customers",
        "REPLACE INTO customers (name) VALUES ('x')",
        "CREATE TABLE evil (a)",
        "CREATE TEMP TABLE evil (a)",
        "CREATE VIEW v AS SELECT 1",
        "CREATE INDEX i ON customers(name)",
        "CREATE TRIGGER tr AFTER INSERT ON customers BEGIN SELECT 1; END",
        "DROP TABLE customers",
        "ALTER TABLE customers ADD COLUMN x INT",
        "ALTER TABLE customers RENAME TO other",
        "BEGIN",
        "COMMIT",
        "SAVEPOINT s",
        "VACUUM",
        "ANALYZE",
        "PRAGMA table_info(customers)",
        "PRAGMA query_only = 0",
        "PRAGMA writable_schema = 1",
        "SELECT * FROM pragma_table_info('customers')",
        "SELECT * FROM sqlite_master",
        "SELECT * FROM sqlite_schema",
        "SELECT * FROM sqlite_temp_master",
        "SELECT load_extension('/lib/x86_64-linux-gnu/libc.so.6')",
        "SELECT fts3_tokenizer('simple')",
        "WITH x AS (SELECT 1) INSERT INTO customers (name) SELECT * FROM x",
    ],
)
def test_writes_and_escapes_are_refused(core: Core, table: DataSource, sql: str) -> None:
    message = refused(core, table, sql)
    assert message.startswith("Query must") or "no such" in message


@pytest.mark.backends("sqlite")  # SQLite's way to other files; PostgreSQL: test_server_files_and_programs_are_refused
def test_attach_of_another_file_is_refused(core: Core, table: DataSource, tmp_path: Path) -> None:
    secret = tmp_path / "secret.db"
    conn = sqlite3.connect(secret)
    conn.execute("CREATE TABLE secrets (s TEXT)")
    conn.execute("INSERT INTO secrets VALUES ('hunter2')")
    conn.commit()
    conn.close()
    for sql in (
        f"ATTACH DATABASE '{secret}' AS s",
        f"ATTACH '{core.settings.resolved_database_url()[len('sqlite:///') :]}' AS store",
        f"VACUUM INTO '{tmp_path / 'copy.db'}'",
    ):
        assert "ATTACH is not allowed" in refused(core, table, sql)
    assert not (tmp_path / "copy.db").exists()


def test_multiple_statements_are_refused(core: Core, table: DataSource) -> None:
    for sql in ("SELECT 1; SELECT 2", "SELECT 1; DELETE FROM customers", "SELECT 1;; INSERT INTO customers VALUES (1)"):
        assert refused(core, table, sql) == "Query must contain a single statement."
    assert query(core, table, "SELECT 1 AS one; -- trailing comment") == [{"one": 1}]


def test_null_characters_are_refused(core: Core, table: DataSource) -> None:
    # (the C APIs would stop reading the text there: what follows must not be silently dropped either)
    message = refused(core, table, "SELECT 1 AS a\x00; DELETE FROM customers")
    assert message == "Query execution error: the query contains a null character"


def test_empty_and_rowless_statements(core: Core, table: DataSource) -> None:
    for sql in ("", "   ", "-- only a comment"):
        assert "single read-only SELECT" in refused(core, table, sql)


def test_other_tables_are_invisible(core: Core, tenant: Tenant, table: DataSource, other_tenant: Tenant) -> None:
    # a table of another data source (here: another workspace) is not in the query's database
    make_table(core, other_tenant.ds, "theirs", "their_customers")
    assert "no such table: their_customers" in refused(core, table, "SELECT * FROM their_customers")
    # a second table of the same data source, not requested, is not there either
    make_table(core, tenant.ds, "t2", "other")
    assert "no such table: other" in refused(core, table, "SELECT * FROM other")
    # the main store's own tables neither
    assert "no such table" in refused(core, table, "SELECT * FROM table_rows")
    assert "no such table" in refused(core, table, "SELECT * FROM src.table_rows")


def test_runaway_recursive_query_hits_the_time_limit(core: Core, table: DataSource) -> None:
    core.tables.settings = core.settings.model_copy(update={"sql_timeout_ms": 200})
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    assert refused(core, table, sql, "query_timeout") == "Query execution timed out after 200 ms."
    cross = "SELECT count(*) FROM customers a, customers b, customers c, (WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL "
    cross += "SELECT x + 1 FROM r WHERE x < 100000000) SELECT x FROM r)"
    refused(core, table, cross, "query_timeout")
    # a bounded recursive query is fine
    assert query(
        core, table, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<5) SELECT sum(x) AS s FROM c"
    ) == [{"s": 15}]


def test_too_many_rows(core: Core, table: DataSource) -> None:
    core.tables.settings = core.settings.model_copy(update={"sql_max_rows": 3})
    assert len(query(core, table, "SELECT * FROM customers LIMIT 3")) == 3
    message = refused(core, table, "SELECT * FROM customers", "too_many_result_rows")
    assert "more than 3 rows" in message


def test_default_limits(core: Core) -> None:
    assert core.settings.sql_timeout_ms == 10_000 and core.settings.sql_max_rows == 2048


@pytest.mark.backends("sqlite")  # PostgreSQL: test_bytea_must_be_utf8_and_non_finite_numbers_are_null
def test_blobs_must_be_utf8_and_non_finite_floats_are_null(core: Core, table: DataSource) -> None:
    assert query(core, table, "SELECT CAST('héllo' AS BLOB) AS b") == [{"b": "héllo"}]
    assert "not valid UTF-8" in refused(core, table, "SELECT x'ff00' AS b")
    assert query(core, table, "SELECT 1e999 AS big, -1e999 AS small") == [{"big": None, "small": None}]


@pytest.mark.backends("postgres")
def test_bytea_must_be_utf8_and_non_finite_numbers_are_null(core: Core, table: DataSource) -> None:
    assert query(core, table, "SELECT convert_to('héllo', 'UTF8') AS b") == [{"b": "héllo"}]
    assert "not valid UTF-8" in refused(core, table, "SELECT '\\xff00'::bytea AS b")
    assert query(core, table, "SELECT 1e999 AS big, 'Infinity'::float8 AS inf, 'NaN'::numeric AS nan") == [
        {"big": None, "inf": None, "nan": None}
    ]


@pytest.mark.backends("sqlite")  # zeroblob and randomblob are SQLite's; PostgreSQL: test_huge_results_are_refused
def test_huge_values_are_refused(core: Core, table: DataSource) -> None:
    refused(core, table, "SELECT zeroblob(100000000) AS z")
    refused(core, table, "SELECT randomblob(40000000) AS z")


@pytest.mark.backends("postgres")
def test_huge_results_are_refused(core: Core, table: DataSource) -> None:
    # 100 MB in one value, and 70 MB over many rows: both past max_result_bytes (64 MiB), fetched row by row
    assert "larger than" in refused(core, table, "SELECT repeat('x', 100000000) AS z")
    assert "larger than" in refused(core, table, "SELECT repeat('x', 1000000) AS z FROM generate_series(1, 70)")


def test_cache_is_reused_and_invalidated_by_row_changes(core: Core, table: DataSource) -> None:
    engine = core.store._query_engine()  # type: ignore[attr-defined]
    assert query(core, table, "SELECT count(*) AS n FROM customers") == [{"n": 4}]
    keys = engine.cached_keys()
    assert query(core, table, "SELECT count(*) AS n FROM customers") == [{"n": 4}]
    assert engine.cached_keys() == keys  # reused
    core.tables.upsert_rows(table, "t1", [TableRow("5", {"name": "Zoe", "amount": 1})], truncate=False)
    assert query(core, table, "SELECT count(*) AS n, sum(amount) AS s FROM customers") == [{"n": 5, "s": 589}]
    core.tables.upsert_rows(table, "t1", [TableRow("5", {"name": "Zoe", "amount": 10})], truncate=False)
    assert query(core, table, "SELECT sum(amount) AS s FROM customers") == [{"s": 598}]
    core.tables.delete_row(table, "t1", "1")
    assert query(core, table, "SELECT count(*) AS n FROM customers WHERE name = 'John'") == [{"n": 0}]
    core.tables.upsert_rows(table, "t1", [TableRow("only", {"k": "v"})], truncate=True)
    assert query(core, table, "SELECT * FROM customers") == [{"k": "v"}]
    # a re-upsert of identical rows changes nothing, so the database is kept
    keys = engine.cached_keys()
    core.tables.upsert_rows(table, "t1", [TableRow("only", {"k": "v"})], truncate=False)
    query(core, table, "SELECT * FROM customers")
    assert engine.cached_keys()[-1] == keys[-1]
    core.tables.delete(table, "t1")
    with pytest.raises(TableNotFound):
        query(core, table, "SELECT * FROM customers")


def test_cache_is_bounded(core: Core, tenant: Tenant) -> None:
    core.tables.settings = core.settings.model_copy(update={"sql_cached_databases": 2})
    for i in range(4):
        make_table(core, tenant.ds, f"t{i}", f"n{i}")
        assert query(core, tenant.ds, f"SELECT count(*) AS c FROM n{i}", f"t{i}") == [{"c": 4}]
    assert len(core.store._query_engine().cached_keys()) == 2  # type: ignore[attr-defined]


def test_same_names_get_suffixes(core: Core, tenant: Tenant) -> None:
    other_ds = core.catalog.create_data_source(tenant.workspace, "second", embedder="fake")
    make_table(core, tenant.ds, "a", "sales")
    core.tables.upsert(other_ds, TableUpsert(name="Sales", description="", table_id="b"), 0)
    core.tables.upsert_rows(other_ds, "b", [TableRow("1", {"amount": 1000})], truncate=False)
    refs = [TableRef(tenant.ds, "a"), TableRef(other_ds, "b")]
    ordered = sorted([(tenant.ds.core_id, "sales"), (other_ds.core_id, "Sales")])
    first, second = ordered[0][1], ordered[1][1] + "_1"
    rows = core.tables.query(
        refs, f'SELECT (SELECT count(*) FROM "{first}") AS a, (SELECT count(*) FROM "{second}") AS b'
    )
    counts = {"sales": 4, "Sales": 1}
    assert rows.rows == [{"a": counts[first], "b": counts[ordered[1][1]]}]
    # the same table twice is one table
    assert core.tables.query([TableRef(tenant.ds, "a")] * 2, "SELECT count(*) AS n FROM sales").rows == [{"n": 4}]


@pytest.mark.backends("sqlite")  # typeof is SQLite's; PostgreSQL: test_empty_table_and_stale_schema_postgres
def test_empty_table_and_stale_schema(core: Core, tenant: Tenant) -> None:
    core.tables.upsert(tenant.ds, TableUpsert(name="empty", description="", table_id="e"), 0)
    assert query(core, tenant.ds, "SELECT count(*) AS n FROM empty", "e") == [{"n": 0}]
    core.tables.upsert_rows(tenant.ds, "e", [TableRow("1", {"v": "text"}), TableRow("2", {"v": 2})], False)
    assert query(core, tenant.ds, "SELECT typeof(v) AS t FROM empty", "e") == [{"t": "text"}, {"t": "text"}]
    # replacing the text row makes the column int again (schema recomputed from all rows)
    core.tables.upsert_rows(tenant.ds, "e", [TableRow("1", {"v": 1})], False)
    assert query(core, tenant.ds, "SELECT typeof(v) AS t FROM empty", "e") == [{"t": "integer"}, {"t": "integer"}]


@pytest.mark.backends("postgres")
def test_empty_table_and_stale_schema_postgres(core: Core, tenant: Tenant) -> None:
    core.tables.upsert(tenant.ds, TableUpsert(name="empty", description="", table_id="e"), 0)
    assert query(core, tenant.ds, "SELECT count(*) AS n FROM empty", "e") == [{"n": 0}]
    core.tables.upsert_rows(tenant.ds, "e", [TableRow("1", {"v": "text"}), TableRow("2", {"v": 2})], False)
    typed = "SELECT v, pg_typeof(v)::text AS t FROM empty"
    assert query(core, tenant.ds, typed, "e") == [{"v": "text", "t": "text"}, {"v": "2", "t": "text"}]
    # replacing the text row makes the column int again (schema recomputed from all rows)
    core.tables.upsert_rows(tenant.ds, "e", [TableRow("1", {"v": 1})], False)
    assert query(core, tenant.ds, typed, "e") == [{"v": 1, "t": "bigint"}, {"v": 2, "t": "bigint"}]


def test_concurrent_queries(core: Core, table: DataSource) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(20):
                assert query(core, table, "SELECT sum(amount) AS s FROM customers") == [{"s": 588}]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_other_workspace_is_separate(core: Core) -> None:
    a = make_tenant(core, "wa")
    b = make_tenant(core, "wb")
    make_table(core, a.ds)
    with pytest.raises(TableNotFound):
        query(core, b.ds, "SELECT * FROM customers")


@pytest.mark.backends("sqlite")  # the authorizer is SQLite's; PostgreSQL: test_defence_in_depth_without_the_cursor
def test_defence_in_depth_without_the_authorizer(core: Core, table: DataSource) -> None:
    """Behind the authorizer, the connection itself refuses writes and attachments."""
    from alexandria.storage.sqlite.sql import MAX_VALUE_BYTES

    engine = core.store._query_engine()  # type: ignore[attr-defined]
    query(core, table, "SELECT 1 AS one FROM customers LIMIT 1")
    (key,) = engine.cached_keys()
    entry = engine.cached(key)
    with entry.borrow() as reader:
        reader.conn.set_authorizer(None)
        try:
            assert reader.conn.execute("PRAGMA query_only").fetchone() == (1,)
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                reader.conn.execute("INSERT INTO customers (name) VALUES ('x')")
            assert reader.conn.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED) == 0
            assert reader.conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) == MAX_VALUE_BYTES
            with pytest.raises(sqlite3.OperationalError):
                reader.conn.execute("ATTACH DATABASE ':memory:' AS other")
        finally:
            reader.conn.set_authorizer(reader.guard.authorize)
    assert stored(core, table) == [TableRow(r.row_id, r.value) for r in ROWS]


@pytest.mark.backends("sqlite")  # sqlite_ names are SQLite's; PostgreSQL: test_catalog_names_are_the_tables
def test_reserved_table_names_fail_cleanly(core: Core, tenant: Tenant) -> None:
    make_table(core, tenant.ds, "r", "sqlite_stuff")
    with pytest.raises(QueryFailed, match="Cannot load the tables") as info:
        query(core, tenant.ds, "SELECT 1", "r")
    assert info.value.code == "query_execution_error"


# --- PostgreSQL: the sandbox's own ways out ----------------------------------------------------------------------
READ_ONLY = "Query must be read-only and use only the given tables: "
DENIED = READ_ONLY + "permission denied for "
# the exploit a plain SET ROLE would let through: set_config switches back to the session user (a superuser here)
# inside the statement, and ts_stat runs SQL as whoever the current user then is
SET_CONFIG_EXPLOIT = (
    "SELECT set_config('role', 'none', true) AS r, (SELECT string_agg(word, ',') FROM ts_stat("
    "'SELECT to_tsvector(''simple'', key_hash) FROM public.api_keys')) AS leak"
)
PG_ESCAPES = {
    # the application's tables: not on the search path, and no privilege on them
    "SELECT * FROM documents": "Query execution error: no such table: documents",
    "SELECT * FROM api_keys": "Query execution error: no such table: api_keys",
    "SELECT * FROM public.api_keys": DENIED + "table api_keys.",
    "SELECT * FROM public.table_rows": DENIED + "table table_rows.",
    "SELECT * FROM public.documents": DENIED + "table documents.",
    "SELECT nextval('public.jobs_id_seq')": DENIED + "sequence jobs_id_seq.",
    "SELECT * FROM ts_stat('SELECT to_tsvector(key_hash) FROM public.api_keys')": DENIED + "table api_keys.",
    # writes, DDL, locks
    "INSERT INTO customers (name) VALUES ('x')": READ_ONLY + "INSERT is not allowed.",
    "UPDATE customers SET amount = 0": READ_ONLY + "UPDATE is not allowed.",
    "DELETE FROM customers": READ_ONLY + "DELETE is not allowed.",
    "MERGE INTO customers c USING customers d ON true WHEN MATCHED THEN DELETE": READ_ONLY + "MERGE is not allowed.",
    "TRUNCATE customers": READ_ONLY + "TRUNCATE is not allowed.",
    "WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d": READ_ONLY
    + "a data-modifying WITH is not allowed.",
    "WITH x AS (SELECT 1) INSERT INTO customers (name) SELECT * FROM x": READ_ONLY + "INSERT is not allowed.",
    "SELECT * FROM customers FOR UPDATE": DENIED + "view customers.",
    "SELECT 1 AS a INTO TEMP evil": "Query execution error: SELECT ... INTO is not allowed here",
    "CREATE TABLE evil (a int)": READ_ONLY + "CREATE is not allowed.",
    "CREATE TEMP TABLE evil (a int)": READ_ONLY + "CREATE is not allowed.",
    "CREATE EXTENSION dblink": READ_ONLY + "CREATE is not allowed.",
    "DROP VIEW customers": READ_ONLY + "DROP is not allowed.",
    "ALTER VIEW customers RENAME TO x": READ_ONLY + "ALTER is not allowed.",
    "GRANT SELECT ON customers TO PUBLIC": READ_ONLY + "GRANT is not allowed.",
    "ALTER ROLE alexandria_sql SUPERUSER": READ_ONLY + "ALTER is not allowed.",
    "LOCK TABLE customers": READ_ONLY + "LOCK is not allowed.",
    "VACUUM": READ_ONLY + "VACUUM is not allowed.",
    # back to the session's user, or other settings
    "SET ROLE postgres": READ_ONLY + "SET is not allowed.",
    "RESET ROLE": READ_ONLY + "RESET is not allowed.",
    "SET SESSION AUTHORIZATION postgres": READ_ONLY + "SET is not allowed.",
    "SELECT set_config('role', 'none', true)": DENIED + "function set_config.",
    "SELECT set_config('session_authorization', 'postgres', false)": DENIED + "function set_config.",
    "SELECT set_config('statement_timeout', '0', false)": DENIED + "function set_config.",
    SET_CONFIG_EXPLOIT: DENIED + "function set_config.",
    "DO $$ BEGIN RESET ROLE; END $$": READ_ONLY + "DO is not allowed.",
    "BEGIN": READ_ONLY + "BEGIN is not allowed.",
    "COMMIT": READ_ONLY + "COMMIT is not allowed.",
    "ROLLBACK": READ_ONLY + "ROLLBACK is not allowed.",
    "PREPARE p AS SELECT 1": READ_ONLY + "PREPARE is not allowed.",
    "EXPLAIN ANALYZE SELECT 1": READ_ONLY + "EXPLAIN is not allowed.",
    "SHOW data_directory": READ_ONLY + "SHOW is not allowed.",
    "SELECT current_setting('data_directory')": READ_ONLY + 'permission denied to examine "data_directory".',
    "LISTEN x": READ_ONLY + "LISTEN is not allowed.",
    "LOAD 'plpgsql'": READ_ONLY + "LOAD is not allowed.",
    "CALL x()": READ_ONLY + "CALL is not allowed.",
    # other sessions and the server
    "SELECT pg_terminate_backend(pg_backend_pid())": READ_ONLY + "permission denied to terminate process.",
    "SELECT pg_reload_conf()": DENIED + "function pg_reload_conf.",
    "SELECT dblink_connect('host=127.0.0.1')": "Query execution error: no such function: dblink_connect",
}


@pytest.mark.backends("postgres")
@pytest.mark.parametrize("sql", list(PG_ESCAPES))
def test_postgres_escapes_are_refused(core: Core, table: DataSource, sql: str) -> None:
    assert refused(core, table, sql) == PG_ESCAPES[sql]


@pytest.mark.backends("postgres")
@pytest.mark.parametrize(
    "sql",
    [
        "COPY customers TO STDOUT",
        "COPY (SELECT 1) TO PROGRAM 'touch {marker}'",
        "COPY customers TO '{marker}'",
        "COPY customers FROM '/etc/passwd'",
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT pg_read_binary_file('/etc/passwd')",
        "SELECT pg_stat_file('postgresql.conf')",
        "SELECT pg_ls_dir('.')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT lo_export(1, '{marker}')",
    ],
)
def test_server_files_and_programs_are_refused(core: Core, table: DataSource, sql: str, tmp_path: Path) -> None:
    marker = tmp_path / "written"
    message = refused(core, table, sql.format(marker=marker))
    assert message.startswith(READ_ONLY), message
    assert not marker.exists()


@pytest.mark.backends("postgres")
def test_catalogs_show_only_the_requested_tables(
    core: Core, tenant: Tenant, table: DataSource, other_tenant: Tenant
) -> None:
    # another workspace's table, with a telling column, queried (so cached) just before
    core.tables.upsert(other_tenant.ds, TableUpsert(name="their_secrets", description="", table_id="s"), 0)
    core.tables.upsert_rows(other_tenant.ds, "s", [TableRow("1", {"their_password": "hunter2"})], False)
    assert query(core, other_tenant.ds, "SELECT their_password FROM their_secrets", "s") == [
        {"their_password": "hunter2"}
    ]
    # information_schema lists what the role may read: the requested table only
    visible = "SELECT table_name FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', "
    visible += "'information_schema')"
    assert query(core, table, visible) == [{"table_name": "customers"}]
    assert query(core, table, "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = 'public'") == [
        {"n": 0}
    ]
    # pg_catalog lists every relation, but cached copies have opaque names and columns (c0, c1...), and the exposed
    # names of other queries exist only inside their own transaction
    for sql in (
        "SELECT relname FROM pg_class WHERE relname LIKE '%their%'",
        "SELECT attname FROM pg_attribute WHERE attname LIKE '%their%'",
        "SELECT viewname FROM pg_views WHERE viewname LIKE '%their%'",
    ):
        assert query(core, table, sql) == [], sql
    # the copy behind our own view cannot be read directly
    mine = "SELECT relname FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relkind = 'r'"
    (temp,) = [r["relname"] for r in query(core, table, mine)]
    assert temp.startswith("alexandria_")
    assert refused(core, table, f"SELECT * FROM pg_temp.{temp}") == DENIED + f"table {temp}."
    # nor another session's copy (here: the other workspace's table, cached by the query above)
    theirs = "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    theirs += "WHERE c.relpersistence = 't' AND c.relkind = 'r' AND c.relnamespace <> pg_my_temp_schema()"
    others = query(core, table, theirs)
    assert others
    for other in others:
        message = refused(core, table, f"SELECT * FROM {other['nspname']}.{other['relname']}")
        assert message.startswith(DENIED), message
    # and other sessions' queries are hidden
    activity = query(core, table, "SELECT DISTINCT query FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                     "AND usename IS NOT NULL AND query <> ''")  # fmt: skip
    assert all(r["query"] == "<insufficient privilege>" for r in activity), activity


@pytest.mark.backends("postgres")
def test_postgres_time_limit(core: Core, table: DataSource) -> None:
    core.tables.settings = core.settings.model_copy(update={"sql_timeout_ms": 200})
    assert refused(core, table, "SELECT pg_sleep(5)", "query_timeout") == "Query execution timed out after 200 ms."
    # a timed-out query cannot extend its own limit
    refused(core, table, "SELECT set_config('statement_timeout', '0', true), pg_sleep(5)")


@pytest.mark.backends("postgres")
def test_the_session_is_clean_after_each_query(core: Core, table: DataSource, settings: Any) -> None:
    assert query(core, table, "SELECT pg_advisory_lock(4242) IS NOT NULL AS locked") == [{"locked": 1}]
    refused(core, table, "SELECT pg_advisory_lock(4243), 1 / 0")
    engine = core.store._query_engine()  # type: ignore[attr-defined]
    (key,) = engine.cached_keys()
    entry = engine.cached(key)
    with entry.borrow() as conn:
        row = conn.execute(
            "SELECT current_user, current_setting('transaction_read_only'), current_setting('search_path'), "
            "current_setting('statement_timeout'), (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND pid = pg_backend_pid())"
        ).fetchone()
    assert row == ("postgres", "off", '"$user", public', "0", 0)


@pytest.mark.backends("postgres")
def test_defence_in_depth_without_the_cursor(core: Core, table: DataSource) -> None:
    """Behind the cursor (which lets only SELECT, VALUES, TABLE and WITH through), the role itself can write nothing,
    read no table of the database and no file, and can change none of its settings, even in statements the cursor
    would refuse."""
    engine = core.store._query_engine()  # type: ignore[attr-defined]
    query(core, table, "SELECT 1 AS one FROM customers LIMIT 1")
    (key,) = engine.cached_keys()
    entry = engine.cached(key)
    with entry.borrow() as conn:
        assert PgQueryEngine.sandbox_problems(conn) == []
    limits = core.tables.settings
    attempts = {
        "INSERT INTO customers (name) VALUES ('x')": psycopg.errors.InsufficientPrivilege,
        "DELETE FROM customers": psycopg.errors.InsufficientPrivilege,
        "INSERT INTO public.workspaces (sid, name, created_at) VALUES ('x', 'x', 0)": (
            psycopg.errors.ReadOnlySqlTransaction
        ),
        "CREATE TEMP TABLE evil (a int)": psycopg.errors.ReadOnlySqlTransaction,
        "SELECT * FROM public.api_keys": psycopg.errors.InsufficientPrivilege,
        "SELECT set_config('role', 'none', true)": psycopg.errors.InsufficientPrivilege,
        "SET statement_timeout = 0": None,  # allowed as a statement (USERSET), but no statement gets this far
        "SET temp_file_limit = -1": psycopg.errors.InsufficientPrivilege,
        "SELECT pg_read_file('/etc/passwd')": psycopg.errors.InsufficientPrivilege,
        "COPY (SELECT 1) TO PROGRAM 'true'": psycopg.errors.InsufficientPrivilege,
        "COPY customers TO '/tmp/alexandria-evil'": psycopg.errors.InsufficientPrivilege,
        "ALTER ROLE alexandria_sql SUPERUSER": psycopg.errors.ReadOnlySqlTransaction,
    }
    from alexandria.domain.tables import QueryLimits

    sandbox = engine._setup(entry, QueryLimits(timeout_ms=limits.sql_timeout_ms, max_rows=10).started())
    with entry.borrow() as conn:
        # what the cursor is for: as *statements*, SET ROLE and RESET ROLE switch back to the session's user (a
        # superuser here), since PostgreSQL checks the session user's memberships, not the current user's
        for statement in ("SET ROLE postgres", "RESET ROLE", "SET SESSION AUTHORIZATION postgres"):
            with conn.transaction(force_rollback=True):
                conn.execute(sandbox)
                conn.execute(statement)
                assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        for sql, error in attempts.items():
            with conn.transaction(force_rollback=True):
                conn.execute(sandbox)
                assert conn.execute("SELECT current_user").fetchone() == (SANDBOX_ROLE,)
                if error is None:
                    conn.execute(sql)
                else:
                    with pytest.raises(error), conn.transaction():
                        conn.execute(sql)
    # ...which the query path never lets run
    assert refused(core, table, "SET ROLE postgres") == READ_ONLY + "SET is not allowed."
    assert refused(core, table, "RESET ROLE") == READ_ONLY + "RESET is not allowed."
    assert stored(core, table) == [TableRow(r.row_id, r.value) for r in ROWS]


@pytest.mark.backends("postgres")
def test_a_weak_sandbox_refuses_to_run(core: Core, table: DataSource, settings: Any) -> None:
    """If the role could call set_config (the migration's REVOKE undone), no query runs at all."""
    url = settings.resolved_database_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO PUBLIC")
    try:
        core.store.close_sql_engine()  # type: ignore[attr-defined]  # a fresh engine checks again
        with pytest.raises(QueryFailed, match=r"SQL over tables is disabled.*can execute set_config"):
            query(core, table, SET_CONFIG_EXPLOIT)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("REVOKE EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) FROM PUBLIC")
    core.store.close_sql_engine()  # type: ignore[attr-defined]
    assert refused(core, table, SET_CONFIG_EXPLOIT) == DENIED + "function set_config."


@pytest.mark.backends("postgres")
def test_catalog_names_are_the_tables(core: Core, tenant: Tenant) -> None:
    # the query's tables come first on the search path, before pg_catalog
    make_table(core, tenant.ds, "r", "pg_class")
    assert query(core, tenant.ds, "SELECT count(*) AS n FROM pg_class", "r") == [{"n": 4}]
    # mixed case: the exact (quoted) name and the folded (unquoted) one
    make_table(core, tenant.ds, "m", "Sales")
    assert query(core, tenant.ds, 'SELECT count(*) AS n FROM "Sales"', "m") == [{"n": 4}]
    assert query(core, tenant.ds, "SELECT count(*) AS n FROM Sales", "m") == [{"n": 4}]


@pytest.mark.backends("postgres")
def test_a_lost_connection_is_replaced(core: Core, table: DataSource, settings: Any) -> None:
    assert query(core, table, "SELECT count(*) AS n FROM customers") == [{"n": 4}]
    engine = core.store._query_engine()  # type: ignore[attr-defined]
    (key,) = engine.cached_keys()
    with engine.cached(key).borrow() as conn:
        pid = conn.info.backend_pid
    with psycopg.connect(settings.resolved_database_url(), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # returns once it is gone
    assert query(core, table, "SELECT count(*) AS n FROM customers") == [{"n": 4}]
    (key,) = engine.cached_keys()
    with engine.cached(key).borrow() as conn:
        assert conn.info.backend_pid != pid
