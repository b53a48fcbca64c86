"""Schema migrations: versions are unique and a database made by an earlier release upgrades in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
