"""The two backends hold the same model: the same tables with the same columns (PostgreSQL's own additions named)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from alexandria.storage.postgres.db import migrate
from alexandria.storage.sqlite.db import SqliteEngine

PG_ONLY_TABLES = {"chunk_terms", "schema_migrations"}  # BM25 postings (FTS5 keeps its own); applied migrations
PG_ONLY_COLUMNS = {
    "data_sources": {"chunk_total", "chunk_length_total", "stats_version"},  # BM25 statistics
    "chunks": {"embedding", "length"},  # vs SQLite's `vector` blob
}
SQLITE_ONLY_COLUMNS = {"chunks": {"vector"}}


def test_sqlite_and_postgres_schemas_match(tmp_path: Path, pg_url: str) -> None:
    db = SqliteEngine(tmp_path / "a.db")
    conn: sqlite3.Connection = db.reader()
    lite: dict[str, set[str]] = {}
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        if name.startswith(("fts_", "sqlite_")):
            continue  # the per-data-source FTS5 tables
        lite[name] = {r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')}
    db.close()
    migrate(pg_url)
    with psycopg.connect(pg_url) as pg:
        found = pg.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
    post: dict[str, set[str]] = {}
    for table, column in found:
        post.setdefault(str(table), set()).add(str(column))
    assert set(post) - PG_ONLY_TABLES == set(lite)
    for table, columns in lite.items():
        expected = (columns - SQLITE_ONLY_COLUMNS.get(table, set())) | PG_ONLY_COLUMNS.get(table, set())
        assert post[table] == expected, table
