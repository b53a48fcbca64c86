"""Bulk loading (``alexandria import``, ``storage/*/bulk_load.py``): a workspace loaded in bulk searches exactly as
the same data written one document at a time (PostgreSQL: the same postings, lengths and statistics row for row);
the embedded store's HNSW index is built during the load, saved, and reused after a restart without a rebuild, and
its keyword index is in step before any search; a new data source's index is kept current by each write (not built
by the first search); and a load killed midway leaves nothing, while one killed between its commit and the index
files is repaired from the rows at the next open (a deleted data source's stale files are never taken for them)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alexandria import transfer
from alexandria.config import Settings
from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.domain.models import DataSource, SearchMode
from alexandria.ingest.chunkers import Section
from alexandria.search.analysis import ANALYZER_VERSION
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from alexandria.services.search import SearchRequest
from alexandria.storage.base import ChunkWrite, DocumentWrite
from alexandria.storage.postgres import bulk_load as pg_bulk
from alexandria.storage.sqlite import bulk_load as sqlite_bulk
from alexandria.storage.sqlite.keyword_index import KeywordIndexes
from alexandria.storage.sqlite.vectors import DataSourceIndex, HnswParams
from bench import scale_workspace as gen
from tests.fakes import HashingEmbedder

pytestmark = pytest.mark.backends("sqlite", "postgres")

WORDS = (
    "the cell membrane protein binds a receptor and signals growth while mitochondria produce energy for "
    "the tissue in patients with chronic disease of the heart lung and liver after viral infection"
).split()
QUERIES = ("membrane receptor signals", "mitochondria energy", "chronic liver disease infection", "heart growth")
FILTERS = {"": FilterSet(), "tag10": FilterSet((DocumentFilter(tags_in=(gen.TAG_10,)),)),
           "tag1": FilterSet((DocumentFilter(tags_in=(gen.TAG_1,)),))}  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


def unit(rows: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, gen.DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def export_text() -> str:
    """A generated workspace of 600 chunks (60 documents) with both tags present."""
    centres, queries = unit(8, 1), unit(2, 2)
    for seed in range(200):
        out = io.StringIO()
        if gen.generate(out, 600, WORDS, centres, queries, seed=seed).tagged[gen.TAG_1]:
            return out.getvalue()
    raise AssertionError("no seed tags a document with the 1% tag")


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of a few documents, so that a 600-chunk load crosses many batch (and builder queue) boundaries."""
    monkeypatch.setattr(sqlite_bulk, "BATCH", 64)
    monkeypatch.setattr(sqlite_bulk, "QUEUED_BATCHES", 2)
    monkeypatch.setattr(pg_bulk, "BATCH", 64)


@pytest.fixture
def stores(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Settings for fresh stores of the backend under test (a database of their own on PostgreSQL)."""
    made: list[str] = []

    def make() -> Settings:
        url = None
        if backend == "postgres":
            server = request.getfixturevalue("pg_server")
            name = f"bulk_{len(made)}_{os.getpid()}_{int(time.time() * 1000) % 10**9}"
            url = server.create_database(name)
            made.append(name)
        # an HNSW search as wide as the data: two graphs built in different orders then give the exact answer alike
        return Settings(data_dir=tmp_path / f"store{len(made)}_{time.time_ns()}", database_url=url,
                        hnsw_expansion_search=1000)  # fmt: skip

    yield make
    if made:
        server = request.getfixturevalue("pg_server")
        for name in made:
            server.drop_database(name)


def open_core(settings: Settings) -> Core:
    core = Core(settings)
    core.embedders.register("minilm", HashingEmbedder(dim=gen.DIM, max_tokens=64))
    return core


def the_data_source(core: Core) -> DataSource:
    ws = core.catalog.workspace("scalebench")
    [ds] = core.store.list_data_sources(ws.id, None)
    return ds


def results(core: Core) -> dict[str, list[tuple[str, str, float]]]:
    ds = the_data_source(core)
    out = {}
    for query in QUERIES:
        for mode in SearchMode:
            for name, filters in FILTERS.items():
                hits = core.search.search(ds, SearchRequest(query, 10, mode, filters))
                out[f"{mode.value} {query} {name}"] = [
                    (r.document.document_id, c.text, round(float(c.score or 0.0), 5)) for r in hits for c in r.chunks
                ]
    return out


def assert_same_results(
    got: dict[str, list[tuple[str, str, float]]], want: dict[str, list[tuple[str, str, float]]]
) -> None:
    """The same hits with the same scores, up to the order of equal scores: the generated texts repeat, so chunks
    tie, and which of the chunks tied at the k-th score make the top k depends on the index's layout (tantivy's
    segments, the HNSW graph), not on the load. Every score group above the last must hold the same chunks."""
    assert got.keys() == want.keys()
    for key, hits in want.items():
        mine = got[key]
        assert [h[2] for h in mine] == [h[2] for h in hits], key
        last = hits[-1][2] if hits else None
        assert {h for h in mine if h[2] != last} == {h for h in hits if h[2] != last}, key


def upsert_one_by_one(core: Core, text: str) -> None:
    """The same workspace written the incremental way: its skeleton imported, then each document upserted on its
    own through the store's per-document writer (its given vectors, nothing embedded)."""
    _, rows = transfer.read_export(io.StringIO(text))
    every = list(rows)
    core.store.import_rows(iter([(t, r) for t, r in every if t not in ("documents", "chunks")]))
    ds = the_data_source(core)
    docs: list[tuple[DocumentWrite, list[ChunkWrite], list[np.ndarray]]] = []
    for table, r in every:
        if table == "documents":
            write = DocumentWrite(document_id=r["document_id"], title=r["title"], mime_type=r["mime_type"],
                                  source_url=r["source_url"], timestamp=r["timestamp"], tags=tuple(r["tags"]),
                                  parents=tuple(r["parents"]), parent_id=r["parent_id"], section_json=r["section"],
                                  text=r["text"], hash=r["hash"], token_count=r["token_count"])  # fmt: skip
            docs.append((write, [], []))
        elif table == "chunks":
            docs[-1][1].append(ChunkWrite(r["offset"], r["text"], r["hash"], r["token_count"], None, None))
            docs[-1][2].append(np.frombuffer(r["vector"], dtype="<f4"))
    for write, chunks, vectors in docs:
        core.store.upsert_document(ds, write, chunks, np.stack(vectors))


def test_a_bulk_load_searches_as_writes_one_document_at_a_time(export_text: str, stores: Any, backend: str) -> None:
    bulk, incremental = open_core(stores()), open_core(stores())
    try:
        transfer.import_workspace(bulk.store, io.StringIO(export_text))
        upsert_one_by_one(incremental, export_text)
        for core in (bulk, incremental):
            ds = the_data_source(core)
            with core.store.db.read() as conn:
                version = conn.scalar("SELECT vector_version FROM data_sources WHERE id = ?", (ds.id,))
                analyzer = conn.scalar("SELECT keyword_analyzer FROM data_sources WHERE id = ?", (ds.id,))
            assert analyzer == ANALYZER_VERSION  # no re-analysis at the next open
            if backend == "sqlite":  # both indexes are current before any search (neither is built by one)
                index = core.store.vectors.get(ds.id, ds.dim)
                keywords = core.store.keywords.get(ds.id)
                assert (len(index), index.version) == (600, version)
                assert index.matrix_ok and len(index.matrix) == 600  # its exact matrix, built alongside
                assert (keywords.num_docs(), keywords.version) == (600, version)
        if backend == "postgres":  # the same postings, chunk lengths and BM25 statistics, row for row
            assert keyword_rows(bulk) == keyword_rows(incremental)
        want = results(incremental)
        assert sum(len(v) for v in want.values()) > 100  # the queries find things, filters included
        assert_same_results(results(bulk), want)
    finally:
        bulk.close()
        incremental.close()


def keyword_rows(core: Core) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """A PostgreSQL store's postings and chunk lengths by (document, offset), and its data source's statistics."""
    with core.store.db.read() as conn:
        postings = conn.all(
            "SELECT d.document_id, c.chunk_offset, t.lexeme, t.tf, t.length, c.length FROM chunk_terms t "
            "JOIN chunks c ON c.id = t.chunk_id JOIN documents d ON d.id = c.document_pk "
            "ORDER BY d.document_id, c.chunk_offset, t.lexeme"
        )
        stats = conn.all("SELECT chunk_total, chunk_length_total FROM data_sources")
    assert len(postings) > 600
    return [tuple(r) for r in postings], [tuple(r) for r in stats]


def test_a_new_data_sources_index_is_kept_current_by_its_writes(stores: Any, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("PostgreSQL's HNSW index is pgvector's, maintained by every insert")
    settings = stores()
    core = open_core(settings)
    try:
        ws, _ = core.catalog.ensure_workspace("wfresh")
        ds = core.catalog.create_data_source(ws, "notes", embedder="minilm")
        for i in range(3):
            core.documents.upsert(ds, UpsertRequest(f"d{i}", Section(None, f"mitochondria energy note {i}")), 1)
        index = core.store.vectors.get(ds.id, ds.dim)
        assert len(index) == 3 and index.version == 3  # in step with no search having run
        reconciles: list[int] = []
        original = DataSourceIndex.reconcile

        def counting(self: DataSourceIndex, *args: Any) -> tuple[int, int]:
            reconciles.append(1)
            return original(self, *args)

        DataSourceIndex.reconcile = counting  # type: ignore[method-assign]
        try:
            hits = core.search.search(ds, SearchRequest("mitochondria energy", 3, SearchMode.VECTOR))
        finally:
            DataSourceIndex.reconcile = original  # type: ignore[method-assign]
        assert len(hits) == 3 and not reconciles
    finally:
        core.close()


def test_the_loaded_index_is_saved_and_reused_after_a_restart(
    export_text: str, stores: Any, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "sqlite":
        pytest.skip("the embedded store's index files")
    settings = stores()
    core = open_core(settings)
    try:
        transfer.import_workspace(core.store, io.StringIO(export_text))
        ds = the_data_source(core)
        files = settings.data_dir / "vectors"
        meta = json.loads((files / f"ds_{ds.id}.json").read_text())  # saved by the load itself, before any close
        index_bytes = (files / f"ds_{ds.id}.usearch").stat().st_size
        assert meta["version"] == 1 and index_bytes > 600 * gen.DIM  # 600 vectors, at least a byte a component (i8)
        before = results(core)
    finally:
        core.close()

    monkeypatch.setattr(DataSourceIndex, "reconcile", no_rebuild)
    again = open_core(settings)
    try:
        assert_same_results(results(again), before)
        assert len(again.store.vectors.get(ds.id, ds.dim)) == 600
    finally:
        again.close()


def no_rebuild(self: DataSourceIndex, *args: Any) -> tuple[int, int]:
    raise AssertionError("the index was rebuilt by a search")


class Died(BaseException):
    """Stands for the process dying at that point."""


def test_a_load_that_dies_before_its_index_is_saved_is_repaired_at_the_next_open(
    export_text: str, stores: Any, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "sqlite":
        pytest.skip("the embedded store's index files")
    reference_settings, settings = stores(), stores()
    reference = open_core(reference_settings)
    try:
        transfer.import_workspace(reference.store, io.StringIO(export_text))
        want = results(reference)
    finally:
        reference.close()
    # a stale index file of a deleted data source with the id the load will give: never mistaken for the new one
    (settings.data_dir / "vectors").mkdir(parents=True)
    stale = DataSourceIndex(settings.data_dir / "vectors" / "ds_1.usearch", gen.DIM, HnswParams())
    stale.add(np.array([1, 2], dtype=np.int64), unit(2, 9), np.array([1, 1], dtype=np.int64))
    stale.version, stale.dirty = 1, True
    stale.save()
    stale_keywords = KeywordIndexes(settings.data_dir / "keyword").get(1)
    stale_keywords.rebuild([(1, "mitochondria energy membrane receptor")], 1)

    def die(self: DataSourceIndex) -> None:
        raise Died

    core = open_core(settings)
    monkeypatch.setattr(DataSourceIndex, "save", die)
    try:
        with pytest.raises(Died):
            transfer.import_workspace(core.store, io.StringIO(export_text))
    finally:
        core.store.engine.close()  # the process is gone: nothing else of it runs
    monkeypatch.undo()
    assert not (settings.data_dir / "vectors" / "ds_1.json").exists()  # committed rows, no index file
    keyword_meta = json.loads((settings.data_dir / "keyword" / "ds_1.json").read_text())  # committed before the save
    assert keyword_meta["version"] == 1 and KeywordIndexes(settings.data_dir / "keyword").get(1).num_docs() == 600
    again = open_core(settings)
    try:
        assert again.store.load_vector_indexes() == 1  # a server's start: rebuilt from the rows there...
        monkeypatch.setattr(DataSourceIndex, "reconcile", no_rebuild)
        assert_same_results(results(again), want)  # ...so no search rebuilds it
    finally:
        again.close()


def test_a_load_killed_midway_leaves_nothing(export_text: str, stores: Any, backend: str) -> None:
    settings = stores()
    target = (
        ["--database-url", settings.database_url] if settings.database_url else ["--data-dir", str(settings.data_dir)]
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    proc = subprocess.Popen([sys.executable, "-m", "alexandria.cli", "import", *target, "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    assert proc.stdin is not None
    lines = export_text.splitlines(keepends=True)
    proc.stdin.write("".join(lines[: len(lines) // 2]).encode())
    proc.stdin.flush()
    time.sleep(8)  # it reads and writes the first half inside its transaction, then waits for the rest
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    core = open_core(settings)
    try:
        with core.store.db.read() as conn:
            assert conn.scalar("SELECT count(*) FROM chunks") == 0
            assert conn.scalar("SELECT count(*) FROM workspaces WHERE sid = 'scalebench'") == 0
        transfer.import_workspace(core.store, io.StringIO(export_text))  # and the whole file loads afterwards
        assert sum(len(v) for v in results(core).values()) > 100
    finally:
        core.close()
    if backend == "sqlite":
        assert not any(p.name.endswith(".tmp") for p in (settings.data_dir / "vectors").iterdir())
