"""The read-only SQL engine over tables: every way out of the sandbox is tried and must be refused, and stored rows
must be unchanged afterwards (dust-behaviour.md §4.3)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from alexandria.domain.models import DataSource
from alexandria.domain.tables import TableRow
from alexandria.services.core import Core
from alexandria.services.tables import TableRef, TableUpsert
from alexandria.tables.errors import QueryFailed, TableNotFound
from tests.conftest import Tenant, make_tenant

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


def test_blobs_must_be_utf8_and_non_finite_floats_are_null(core: Core, table: DataSource) -> None:
    assert query(core, table, "SELECT CAST('héllo' AS BLOB) AS b") == [{"b": "héllo"}]
    assert "not valid UTF-8" in refused(core, table, "SELECT x'ff00' AS b")
    assert query(core, table, "SELECT 1e999 AS big, -1e999 AS small") == [{"big": None, "small": None}]


def test_huge_values_are_refused(core: Core, table: DataSource) -> None:
    refused(core, table, "SELECT zeroblob(100000000) AS z")
    refused(core, table, "SELECT randomblob(40000000) AS z")


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


def test_empty_table_and_stale_schema(core: Core, tenant: Tenant) -> None:
    core.tables.upsert(tenant.ds, TableUpsert(name="empty", description="", table_id="e"), 0)
    assert query(core, tenant.ds, "SELECT count(*) AS n FROM empty", "e") == [{"n": 0}]
    core.tables.upsert_rows(tenant.ds, "e", [TableRow("1", {"v": "text"}), TableRow("2", {"v": 2})], False)
    assert query(core, tenant.ds, "SELECT typeof(v) AS t FROM empty", "e") == [{"t": "text"}, {"t": "text"}]
    # replacing the text row makes the column int again (schema recomputed from all rows)
    core.tables.upsert_rows(tenant.ds, "e", [TableRow("1", {"v": 1})], False)
    assert query(core, tenant.ds, "SELECT typeof(v) AS t FROM empty", "e") == [{"t": "integer"}, {"t": "integer"}]


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


def test_defence_in_depth_without_the_authorizer(core: Core, table: DataSource) -> None:
    """Behind the authorizer, the connection itself refuses writes and attachments."""
    from alexandria.storage.sqlite.sql import MAX_VALUE_BYTES

    engine = core.store._query_engine()  # type: ignore[attr-defined]
    query(core, table, "SELECT 1 AS one FROM customers LIMIT 1")
    (key,) = engine.cached_keys()
    entry = engine._cache[key]
    with entry.lock:
        entry.conn.set_authorizer(None)
        try:
            assert entry.conn.execute("PRAGMA query_only").fetchone() == (1,)
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                entry.conn.execute("INSERT INTO customers (name) VALUES ('x')")
            assert entry.conn.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED) == 0
            assert entry.conn.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) == MAX_VALUE_BYTES
            with pytest.raises(sqlite3.OperationalError):
                entry.conn.execute("ATTACH DATABASE ':memory:' AS other")
        finally:
            entry.conn.set_authorizer(entry.guard.authorize)
    assert stored(core, table) == [TableRow(r.row_id, r.value) for r in ROWS]


def test_reserved_table_names_fail_cleanly(core: Core, tenant: Tenant) -> None:
    make_table(core, tenant.ds, "r", "sqlite_stuff")
    with pytest.raises(QueryFailed, match="Cannot load the tables") as info:
        query(core, tenant.ds, "SELECT 1", "r")
    assert info.value.code == "query_execution_error"
