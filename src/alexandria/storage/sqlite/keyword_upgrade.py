"""Upgrade of a data directory from before the tantivy keyword index: each data source's FTS5 table (``fts_<id>``)
is dropped once its tantivy index is built and in step with the database (an open-time step: a crash in between
leaves the FTS5 table, and the next open finds the index in step and only drops the table)."""

from __future__ import annotations

import logging

from alexandria.search.analysis import ANALYZER_VERSION
from alexandria.storage.sqlite.db import SqliteEngine, quote_ident
from alexandria.storage.sqlite.keyword_index import KeywordIndexes

log = logging.getLogger(__name__)


def legacy_fts5_tables(engine: SqliteEngine) -> list[tuple[str, int]]:
    """``(table, data source id)`` of every FTS5 table the store once made (not their shadow tables)."""
    rows = engine.reader().execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'fts_[0-9]*' "
        "AND NOT name GLOB 'fts_*_*' AND sql LIKE 'CREATE VIRTUAL TABLE%'"
    )
    return [(str(r[0]), int(str(r[0])[4:])) for r in rows]


def drop_fts5_tables(engine: SqliteEngine, keywords: KeywordIndexes) -> int:
    """Build the keyword index of each data source that still has an FTS5 table, then drop the table; returns how
    many tables were dropped."""
    tables = legacy_fts5_tables(engine)
    for table, ds_id in tables:
        with engine.snapshot() as conn:
            row = conn.execute("SELECT vector_version FROM data_sources WHERE id = ?", (ds_id,)).fetchone()
            if row is not None:
                index = keywords.get(ds_id)
                with index.lock:
                    if index.version != int(row[0]):
                        added, _ = index.reconcile(conn, ds_id, int(row[0]))
                        log.info("upgrade: keyword index of data source %d built (%d chunks)", ds_id, added)
        with engine.write() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
            # built from the chunk rows by this release's analyzer: nothing left to re-analyse
            conn.execute("UPDATE data_sources SET keyword_analyzer = ? WHERE id = ?", (ANALYZER_VERSION, ds_id))
        log.info("upgrade: dropped the FTS5 table %s", table)
    return len(tables)
