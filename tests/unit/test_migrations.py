"""Schema migrations: versions are unique and a database made by an earlier release upgrades in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alexandria.storage.sqlite.db import SqliteEngine, _split_sql, migrations


def test_versions_are_unique_and_increasing() -> None:
    versions = [v for v, _ in migrations()]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


def test_database_of_an_earlier_schema_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for version, sql in migrations():
        if version > 3:  # the last released schema had migrations 1 and 3
            break
        for statement in _split_sql(sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("INSERT INTO workspaces (sid, name, created_at) VALUES ('acme', 'acme', 0)")
    conn.close()

    db = SqliteEngine(path)
    assert db.schema_version == migrations()[-1][0]
    reader = db.reader()
    names = {r[0] for r in reader.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"data_tables", "table_rows", "jobs"} <= names
    assert reader.execute("SELECT sid FROM workspaces").fetchall() == [("acme",)]


def test_live_index_jobs_of_dify_documents_take_the_dify_kind(tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for version, sql in migrations():
        if version > 6:  # the schema before Dify documents had their own index job kind
            break
        for statement in _split_sql(sql):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("INSERT INTO workspaces (id, sid, name, created_at) VALUES (1, 'acme', 'acme', 0)")
    conn.execute(
        "INSERT INTO spaces (id, sid, workspace_id, kind, name, created_at, updated_at) "
        "VALUES (1, 's', 1, 'global', 'g', 0, 0)"
    )
    conn.execute(
        "INSERT INTO data_sources (id, sid, core_id, workspace_id, space_id, name, embedder, dim, chunk_size, "
        "created_at) VALUES (1, 'd', 'c', 1, 1, 'docs', 'minilm', 384, 256, 0)"
    )
    for doc_id, dify in (("dust", None), ("dify", '{"doc_form": "text_model"}')):
        conn.execute(
            "INSERT INTO documents (data_source_id, document_id, title, mime_type, timestamp, tags, parents, section, "
            "text, hash, text_size, chunk_count, token_count, created, updated, dify) "
            "VALUES (1, ?, ?, 'text/plain', 0, '[]', '[]', '{}', '', 'h', 0, 0, 0, 0, 0, ?)",
            (doc_id, doc_id, dify),
        )
    for doc_id, state in (("dust", "queued"), ("dify", "queued"), ("dify", "done")):
        conn.execute(
            "INSERT INTO jobs (kind, workspace_id, data_source_id, subject, payload, state, created_at, updated_at) "
            "VALUES ('index_document', 1, 1, ?, '{}', ?, 0, 0)",
            (doc_id, state),
        )
    conn.close()

    db = SqliteEngine(path)
    found = db.reader().execute("SELECT subject, state, kind FROM jobs ORDER BY id").fetchall()
    assert found == [
        ("dust", "queued", "index_document"),
        ("dify", "queued", "index_dify_document"),
        ("dify", "done", "index_document"),  # finished jobs keep their history
    ]


def test_planner_statistics_are_gathered_once_the_chunks_grow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import alexandria.storage.sqlite.db as sqlite_db

    monkeypatch.setattr(sqlite_db, "ANALYZE_FROM", 4)
    db = SqliteEngine(tmp_path / "stats.db")

    def stats() -> int:
        reader = db.reader()
        if reader.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone() is None:
            return 0
        return int(reader.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0])

    def add_chunks(n: int) -> None:
        with db.write() as conn:
            conn.execute("INSERT OR IGNORE INTO workspaces (id, sid, name, created_at) VALUES (1, 'w', 'w', 0)")
            conn.execute(
                "INSERT OR IGNORE INTO spaces (id, sid, workspace_id, kind, name, created_at, updated_at) "
                "VALUES (1, 's', 1, 'global', 'g', 0, 0)"
            )
            conn.execute(
                "INSERT OR IGNORE INTO data_sources (id, sid, core_id, workspace_id, space_id, name, embedder, dim, "
                "chunk_size, created_at) VALUES (1, 'd', 'c', 1, 1, 'docs', 'minilm', 2, 256, 0)"
            )
            doc = conn.execute(
                "INSERT INTO documents (data_source_id, document_id, title, mime_type, timestamp, tags, parents, "
                "section, text, hash, text_size, chunk_count, token_count, created, updated) "
                "VALUES (1, hex(randomblob(8)), 't', 'text/plain', 0, '[]', '[]', '{}', '', 'h', 0, 0, 0, 0, 0) "
                "RETURNING id"
            ).fetchone()[0]
            conn.executemany(
                "INSERT INTO chunks (data_source_id, document_pk, chunk_offset, text, hash, token_count, vector) "
                "VALUES (1, ?, ?, 'x', 'h', 1, x'0000000000000000')",
                [(doc, i) for i in range(n)],
            )

    add_chunks(3)
    assert stats() == 0  # below the threshold: no statistics yet
    add_chunks(2)
    assert stats() > 0  # gathered after the commit that crossed it
    db.close()
