"""The embedded PostgreSQL 18 + pgvector server the PostgreSQL backend's tests run on (tests/pg.py)."""

from __future__ import annotations

import os
import shutil
import time
import uuid

import psycopg
import pytest
from psycopg import errors

from devtools.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError, start
from tests import pg


def _one(conn: psycopg.Connection[tuple[object, ...]], query: str) -> object:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_server_runs_unprivileged_on_loopback_with_a_password(pg_server: EmbeddedPostgres) -> None:
    server_uid = os.stat(f"/proc/{pg_server.pid}").st_uid
    assert server_uid != 0
    assert pg_server.data_dir.stat().st_uid == server_uid
    with pg_server.connect() as conn:
        backend = _one(conn, "SELECT pg_backend_pid()")
        assert os.stat(f"/proc/{backend}").st_uid == server_uid
        assert _one(conn, "SHOW listen_addresses") == "127.0.0.1"
        assert _one(conn, "SHOW unix_socket_directories") == ""
        assert int(str(_one(conn, "SHOW server_version_num"))) >= 180000
    if os.geteuid() == 0:
        assert pg_server.os_user != "root"
    no_password = f"postgresql://postgres@127.0.0.1:{pg_server.port}/postgres"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(no_password, connect_timeout=5).close()


def test_pgvector_is_at_least_0_8(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        version = str(_one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'vector'"))
    assert tuple(int(part) for part in version.split(".")[:2]) >= (0, 8)


def test_hnsw_on_halfvec_with_iterative_scan(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, embedding halfvec(384) NOT NULL)")
        conn.execute("SELECT setseed(0.42)")
        conn.execute(
            "INSERT INTO items SELECT i, (SELECT array_agg(random() - 0.5) FROM generate_series(1, 384) WHERE i > 0)"
            "::real[]::halfvec(384) FROM generate_series(1, 1000) AS i"
        )
        conn.execute("CREATE INDEX items_embedding_hnsw ON items USING hnsw (embedding halfvec_cosine_ops)")
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET hnsw.ef_search = 10")
        # 1 row in 25 passes the filter: the 10 graph candidates rarely hold 10 of them, unless the scan iterates.
        query = (
            "SELECT id FROM items WHERE id % 25 = 0"
            " ORDER BY embedding <=> (SELECT embedding FROM items WHERE id = 100) LIMIT 10"
        )
        plan = "\n".join(str(row[0]) for row in conn.execute("EXPLAIN " + query))
        assert "items_embedding_hnsw" in plan
        conn.execute("SET hnsw.iterative_scan = off")
        assert len(conn.execute(query).fetchall()) < 10
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        ids = [int(str(row[0])) for row in conn.execute(query)]
    assert len(ids) == 10
    assert all(i % 25 == 0 for i in ids)
    assert 100 in ids


def test_full_text_search(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL,"
            " tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED)"
        )
        conn.execute("CREATE INDEX docs_tsv ON docs USING gin (tsv)")
        conn.execute(
            "INSERT INTO docs (id, body) VALUES (1, 'The quick brown fox runs over the lazy dogs'),"
            " (2, 'A treatise on relational databases'), (3, 'Running foxes: foxes keep running, and the fox runs')"
        )
        q = "running foxes"
        direct = conn.execute(
            "SELECT id FROM docs WHERE to_tsvector('english', body) @@ plainto_tsquery('english', %s) ORDER BY id",
            [q],
        ).fetchall()
        ranked = conn.execute(
            "SELECT id FROM docs, plainto_tsquery('english', %s) AS q WHERE tsv @@ q ORDER BY ts_rank(tsv, q) DESC",
            [q],
        ).fetchall()
        assert _one(conn, "SELECT to_tsvector('english', 'Straße CAFÉ') @@ plainto_tsquery('english', 'café')")
    assert direct == [(1,), (3,)]  # stemming: runs/running -> run, foxes -> fox
    assert ranked == [(3,), (1,)]  # more matches rank higher


def test_databases_are_isolated(pg_server: EmbeddedPostgres, pg_url: str) -> None:
    other = f"t_{uuid.uuid4().hex[:20]}"
    other_url = pg_server.create_database(other)
    try:
        with psycopg.connect(pg_url, autocommit=True) as a, psycopg.connect(other_url, autocommit=True) as b:
            a.execute("CREATE TABLE secret (x text)")
            a.execute("INSERT INTO secret VALUES ('only in a')")
            assert _one(b, "SELECT to_regclass('secret')") is None
            assert _one(b, "SELECT current_database()") == other
            assert _one(b, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'") == 1
            b.execute("CREATE TABLE secret (x text)")
            assert _one(b, "SELECT count(*) FROM secret") == 0
            assert _one(a, "SELECT count(*) FROM secret") == 1
    finally:
        pg_server.drop_database(other)
    with pg_server.connect() as conn:
        assert _one(conn, f"SELECT count(*) FROM pg_database WHERE datname = '{other}'") == 0


def test_statement_timeout_and_read_only_transaction(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("BEGIN READ ONLY")
        conn.execute("SET LOCAL statement_timeout = '200ms'")
        assert _one(conn, "SELECT count(*) FROM t") == 0
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("ROLLBACK")
        conn.execute("BEGIN READ ONLY")
        conn.execute("SET LOCAL statement_timeout = '200ms'")
        began = time.monotonic()
        with pytest.raises(errors.QueryCanceled, match="statement timeout"):
            conn.execute("SELECT pg_sleep(5)")
        assert time.monotonic() - began < 3
        conn.execute("ROLLBACK")
    # The same limits set per connection, as a read-only SQL endpoint would.
    options = "-c default_transaction_read_only=on -c statement_timeout=200"
    with psycopg.connect(pg_url, options=options) as conn:
        with pytest.raises(errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE u (x int)")
        conn.rollback()
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(5)")
        conn.rollback()
    with psycopg.connect(pg_url) as conn:
        assert _one(conn, "SELECT count(*) FROM t") == 0
        assert _one(conn, "SELECT to_regclass('u')") is None


def test_start_failure_raises_with_the_server_log(pg_server: EmbeddedPostgres) -> None:
    base = pg.scratch_dir()
    try:
        with pytest.raises(EmbeddedPostgresError, match=r"(?s)exited with code.*server log.*could not bind"):
            start(base / "data", port=pg_server.port, settings=pg.TEST_SETTINGS)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_restart_keeps_data_and_password() -> None:
    base = pg.scratch_dir()
    try:
        with start(base / "data", settings=pg.TEST_SETTINGS) as first:
            url = first.create_database("kept")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE TABLE t AS SELECT '[1,2,3]'::vector(3) AS v")
            password = first.password
        assert not first.running
        with start(base / "data", settings=pg.TEST_SETTINGS) as second:
            assert second.password == password
            with psycopg.connect(second.url("kept")) as conn:
                assert _one(conn, "SELECT v::text FROM t") == "[1,2,3]"
    finally:
        shutil.rmtree(base, ignore_errors=True)
