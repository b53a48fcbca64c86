"""Upgrading a store whose keyword index an earlier release built (FTS5's ``porter unicode61`` tokenizer on SQLite,
the ``english`` text search configuration's postings on PostgreSQL): opening it re-analyses every data source with
the one analyzer, logs the progress, and afterwards search, deletes and the BM25 statistics work as on a new store,
the two engines giving the same scores."""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import psycopg
import pytest

from alexandria.config import Settings
from alexandria.domain.filters import FilterSet
from alexandria.domain.models import DataSource, SearchMode
from alexandria.ingest.chunkers import Section
from alexandria.search.analysis import ANALYZER_VERSION, document_terms
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from tests.fakes import HashingEmbedder

DOCS = {
    "beijing": "北京是中华人民共和国的首都，也是全国的政治中心。",
    "cairo": "القاهرةُ هي عاصمةُ جمهوريةِ مِصرَ العربيةِ وأكبرُ مُدُنِها.",
    "cats": "The cats were sleeping on the mats while the runners were running.",
}
QUERIES = {"中国的首都": "beijing", "عاصمة مصر": "cairo", "running cat": "cats"}


def open_core(settings: Settings) -> Core:
    core = Core(settings)
    core.embedders.register("fake", HashingEmbedder())
    return core


def build(settings: Settings) -> int:
    """A data source holding DOCS, written by this release; its id."""
    core = open_core(settings)
    try:
        ws, _ = core.catalog.ensure_workspace("w")
        ds = core.catalog.create_data_source(ws, "docs", embedder="fake")
        for doc_id, text in DOCS.items():
            core.documents.upsert(ds, UpsertRequest(doc_id, Section(None, text, ())), 1)
        return ds.id
    finally:
        core.close()


def data_source(core: Core) -> DataSource:
    ws = core.catalog.workspace("w")
    found = core.catalog.find_data_source(ws, "docs")
    assert found is not None
    return found


def keyword(core: Core, ds: DataSource, query: str) -> list[tuple[str, float]]:
    hits = core.search.rank_chunks(ds, query, SearchMode.KEYWORD, FilterSet(), 10)
    docs = core.search.documents_by_pk(sorted({h.document_pk for h in hits}))
    # scores to 4 decimals: tantivy's are float32
    return [(docs[h.document_pk].document_id, round(float(h.score or 0.0), 4)) for h in hits]


def check_upgraded(core: Core) -> dict[str, list[tuple[str, float]]]:
    ds = data_source(core)
    results = {query: keyword(core, ds, query) for query in QUERIES}
    for query, expected in QUERIES.items():
        assert results[query] and results[query][0][0] == expected, (query, results[query])
    return results


def make_sqlite_old(data_dir: Path, ds_id: int) -> None:
    """Turn the data directory back into what the release before the analyzer left: FTS5 over the chunks' text with
    the porter tokenizer (no tantivy index), and the analyzer column as its migration adds it to existing rows (0)."""
    shutil.rmtree(data_dir / "keyword")
    fts = f'"fts_{ds_id}"'
    with sqlite3.connect(data_dir / "alexandria.db") as raw:
        raw.execute(
            f"CREATE VIRTUAL TABLE {fts} USING fts5(text, content='chunks', content_rowid='id', "
            "tokenize='porter unicode61 remove_diacritics 2')"
        )
        raw.execute(f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')")
        raw.execute("UPDATE data_sources SET keyword_analyzer = 0")


def test_an_old_sqlite_data_directory_is_reanalysed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    ds_id = build(settings)
    make_sqlite_old(tmp_path / "data", ds_id)

    with caplog.at_level(logging.INFO, logger="alexandria.storage.sqlite.keyword_upgrade"):
        core = open_core(settings)
    try:
        built = [r.getMessage() for r in caplog.records if "keyword index of data source" in r.getMessage()]
        assert built == [f"upgrade: keyword index of data source {ds_id} built ({len(DOCS)} chunks)"], built
        check_upgraded(core)
        ds = data_source(core)
        core.documents.delete(ds, "beijing")  # a delete after the upgrade takes the document's terms out
        assert keyword(core, ds, "中国的首都") == []
    finally:
        core.close()
    with sqlite3.connect(tmp_path / "data" / "alexandria.db") as raw:
        assert raw.execute("SELECT keyword_analyzer FROM data_sources").fetchall() == [(ANALYZER_VERSION,)]
        assert raw.execute("SELECT count(*) FROM sqlite_master WHERE name GLOB 'fts_*'").fetchone() == (0,)

    caplog.clear()
    with caplog.at_level(logging.INFO):
        open_core(settings).close()  # up to date: nothing rebuilt or re-analysed
    assert not [r for r in caplog.records if "keyword index" in r.getMessage() or "re-analys" in r.getMessage()]


def test_reanalysis_reports_progress_per_data_source(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    ds_id = build(settings)
    make_sqlite_old(tmp_path / "data", ds_id)
    seen: list[tuple[int, int, int]] = []
    core = open_core(settings)
    try:  # opening re-analysed it already: mark it stale again and run the upgrade by hand
        with core.store.db.write() as conn:
            conn.execute("UPDATE data_sources SET keyword_analyzer = 0")
        assert core.store.index.reanalyze_stale(lambda *p: seen.append(p)) == [ds_id]
        assert seen[0] == (ds_id, 0, len(DOCS)) and seen[-1] == (ds_id, len(DOCS), len(DOCS))
        check_upgraded(core)
    finally:
        core.close()


def make_postgres_old(url: str, ds_id: int) -> None:
    """Turn the database back into what the release before the analyzer left: postings and lengths from
    ``to_tsvector('english')``, no analyzer column, migration 3 not applied."""
    with psycopg.connect(url) as raw:
        raw.execute("DELETE FROM chunk_terms WHERE data_source_id = %s", (ds_id,))
        raw.execute(
            "UPDATE chunks SET length = (SELECT coalesce(sum(coalesce(array_length(t.positions, 1), 1)), 0) "
            "FROM unnest(to_tsvector('english', chunks.text)) t) WHERE data_source_id = %s",
            (ds_id,),
        )
        raw.execute(
            "INSERT INTO chunk_terms (data_source_id, lexeme, chunk_id, tf, length) "
            "SELECT c.data_source_id, t.lexeme, c.id, coalesce(array_length(t.positions, 1), 1), c.length "
            "FROM chunks c CROSS JOIN LATERAL unnest(to_tsvector('english', c.text)) t WHERE c.data_source_id = %s",
            (ds_id,),
        )
        raw.execute(
            "UPDATE data_sources SET chunk_length_total = (SELECT sum(length) FROM chunks WHERE data_source_id = %s), "
            "stats_version = stats_version + 1 WHERE id = %s",
            (ds_id, ds_id),
        )
        raw.execute("UPDATE data_sources SET keyword_analyzer = 0")  # as the analyzer's migration leaves old rows


def test_an_old_postgres_database_is_reanalysed_and_agrees_with_sqlite(tmp_path: Path, pg_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "pg", database_url=pg_url)
    ds_id = build(settings)
    make_postgres_old(pg_url, ds_id)
    core = open_core(settings)
    try:
        upgraded = check_upgraded(core)
    finally:
        core.close()
    with psycopg.connect(pg_url) as raw:
        rows = raw.execute("SELECT text, length FROM chunks WHERE data_source_id = %s", (ds_id,)).fetchall()
        assert all(length == len(document_terms(text)) for text, length in rows)
        stats = raw.execute("SELECT chunk_length_total, keyword_analyzer FROM data_sources WHERE id = %s", (ds_id,))
        assert stats.fetchone() == (sum(length for _, length in rows), ANALYZER_VERSION)

    lite_settings = Settings(data_dir=tmp_path / "lite")
    build(lite_settings)
    lite = open_core(lite_settings)
    try:
        assert check_upgraded(lite) == upgraded  # the same documents and BM25 scores on both engines
    finally:
        lite.close()
