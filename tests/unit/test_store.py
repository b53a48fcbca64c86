"""Storage contract: documents, both indexes kept consistent, the ANN cache reconciled, filters vs a reference."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from alexandria.config import Settings
from alexandria.domain.filters import DocumentFilter, FilterSet, matches_all
from alexandria.domain.models import SearchMode
from alexandria.ingest.chunkers import Section
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from alexandria.storage.sqlite.store import SqliteStore
from tests.conftest import make_tenant
from tests.fakes import HashingEmbedder

pytestmark = pytest.mark.backends("sqlite", "postgres")

T0 = 1_700_000_000_000
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
]


def open_core(settings: Settings) -> Core:
    core = Core(settings)
    core.embedders.register("fake", HashingEmbedder())
    return core


def put(core: Core, ds_name: str, doc_id: str, text: str, **kw: object) -> None:
    ws = core.catalog.workspace("w1")
    ds = core.catalog.data_source(ws, ds_name)
    core.documents.upsert(ds, UpsertRequest(doc_id, Section(None, text, ()), **kw), T0)  # type: ignore[arg-type]


def vector_ids(core: Core, query: str, k: int = 50, filters: FilterSet | None = None) -> list[str]:
    ws = core.catalog.workspace("w1")
    ds = core.catalog.data_source(ws, "docs")
    hits = core.search.rank_chunks(ds, query, SearchMode.VECTOR, filters or FilterSet(), k)
    docs = core.store.documents_by_pk([h.document_pk for h in hits], with_text=False)
    return [docs[h.document_pk].document_id for h in hits]


def test_chunks_replaced_atomically_and_indexes_follow(core: Core) -> None:
    t = make_tenant(core, "w1")
    words = " ".join(f"{WORDS[i % len(WORDS)]}{i}" for i in range(100))
    core.documents.upsert(t.ds, UpsertRequest("d", Section(None, words, ())), T0)
    first = core.store.chunks_of_documents([core.store.get_document(t.ds, "d", False).pk])  # type: ignore[union-attr]
    assert len(first) == 4  # 100 words / 32-token chunks, balanced
    core.documents.upsert(t.ds, UpsertRequest("d", Section(None, "short replacement", ())), T0)
    doc = core.store.get_document(t.ds, "d", True)
    assert doc is not None and doc.chunk_count == 1 and doc.text == "short replacement"
    assert [c.text for c in core.store.chunks_of_documents([doc.pk])] == ["short replacement"]
    assert core.store.keyword_search(t.ds, "alpha0 beta1", FilterSet(), 10) == []
    assert len(core.store.keyword_search(t.ds, "replacement", FilterSet(), 10)) == 1
    query = core.embedders.get("fake").embed(["alpha0"])[0]
    assert len(core.store.vector_search(t.ds, query, FilterSet(), 10)) == 1
    if isinstance(core.store, SqliteStore):  # the embedded store's HNSW cache holds exactly the live chunks
        assert len(core.store.vectors.get(t.ds.id, t.ds.dim)) == 1


@pytest.mark.backends("sqlite")  # the embedded store's HNSW cache file
def test_index_survives_restart_and_is_reconciled_after_a_crash(settings: Settings) -> None:
    core = open_core(settings)
    make_tenant(core, "w1")
    for i in range(30):
        put(core, "docs", f"d{i}", f"{WORDS[i % len(WORDS)]} document number {i}")
    before = vector_ids(core, "gamma document")
    core.close()  # clean shutdown saves the HNSW file

    core = open_core(settings)
    assert vector_ids(core, "gamma document") == before
    # "crash": changes committed to SQLite, HNSW file not saved
    put(core, "docs", "late", "gamma gamma late arrival")
    ws = core.catalog.workspace("w1")
    core.documents.delete(core.catalog.data_source(ws, "docs"), "d2")
    core.store.engine.close()  # type: ignore[attr-defined]  # no save_all

    core = open_core(settings)
    got = vector_ids(core, "gamma late arrival")
    assert got[0] == "late" and "d2" not in got
    index = core.store.vectors.get(1, 64)  # type: ignore[attr-defined]
    assert len(index) == 30
    core.close()

    # a missing or corrupt cache file is rebuilt from the database
    shutil.rmtree(settings.data_dir / "vectors")
    core = open_core(settings)
    assert vector_ids(core, "gamma late arrival")[0] == "late"
    core.close()
    (settings.data_dir / "vectors" / "ds_1.usearch").write_bytes(b"garbage")
    core = open_core(settings)
    assert vector_ids(core, "gamma late arrival")[0] == "late"
    core.close()


def test_writes_from_another_process_are_seen(settings: Settings) -> None:
    server = open_core(settings)
    make_tenant(server, "w1")
    put(server, "docs", "a", "alpha beta")
    assert vector_ids(server, "alpha") == ["a"]
    cli = open_core(settings)  # e.g. `alexandria ingest` while the server runs
    put(cli, "docs", "b", "gamma delta")
    cli.close()
    assert vector_ids(server, "gamma delta")[0] == "b"
    server.close()


def _random_filter(rng: random.Random, tags: list[str], parents: list[str]) -> DocumentFilter:
    def pick(pool: list[str]) -> tuple[str, ...] | None:
        return None if rng.random() < 0.5 else tuple(rng.sample(pool, rng.randint(0, 2)))

    lo = T0 + rng.randint(0, 100) if rng.random() < 0.4 else None
    hi = T0 + rng.randint(0, 100) if rng.random() < 0.4 else None
    return DocumentFilter(pick(tags), pick(tags), pick(parents), pick(parents), lo, hi)


def test_randomized_filters_match_reference(settings: Settings) -> None:
    settings = settings.model_copy(update={"exact_search_max_candidates": 40})
    core = open_core(settings)
    t = make_tenant(core, "w1")
    rng = random.Random(7)
    tags = ["t1", "t2", "t3", "t4"]
    folders = ["f1", "f2", "f3"]
    for i in range(120):
        doc_id = f"d{i}"
        parents = (doc_id, *rng.sample(folders, rng.randint(0, 2)))
        core.documents.upsert(
            t.ds,
            UpsertRequest(
                doc_id,
                Section(None, " ".join(rng.sample(WORDS, 5)), ()),
                tags=tuple(rng.sample(tags, rng.randint(0, 3))),
                parents=parents,
                parent_id=parents[1] if len(parents) > 1 else None,
                timestamp=T0 + rng.randint(0, 100),
            ),
            T0,
        )
    all_docs = core.store.documents_by_pk(list(range(1, 200)), with_text=False)
    assert len(all_docs) == 120
    for _ in range(60):
        filters = FilterSet((_random_filter(rng, tags, folders), _random_filter(rng, tags, folders)))
        expected = {d.document_id for d in all_docs.values() if matches_all(d, filters)}
        latest = core.store.latest_documents(t.ds, filters, 1000)
        assert {all_docs[pk].document_id for pk in latest} == expected
        query = " ".join(rng.sample(WORDS, 3))
        for mode in (SearchMode.KEYWORD, SearchMode.VECTOR, SearchMode.HYBRID):
            hits = core.search.rank_chunks(t.ds, query, mode, filters, 200)
            got = {all_docs[h.document_pk].document_id for h in hits}
            assert got <= expected
            if mode is SearchMode.VECTOR:
                assert got == expected  # every candidate has a vector score: all are returned
    core.close()


def test_hnsw_agrees_with_exact(core: Core) -> None:
    t = make_tenant(core, "w1")
    rng = random.Random(3)
    for i in range(300):
        core.documents.upsert(t.ds, UpsertRequest(f"d{i}", Section(None, " ".join(rng.sample(WORDS, 6)), ())), T0)
    query = core.embedders.get("fake").embed(["alpha beta gamma"])[0]
    ann = core.store.vector_search(t.ds, query, FilterSet(), 10)
    every = [c.pk for c in core.store.chunks_of_documents(list(range(1, 301)))]
    exact = sorted(core.store.vector_scores(t.ds, query, every).items(), key=lambda kv: -kv[1])[:10]
    assert np.isclose([s.score for s in ann], [s for _, s in exact], atol=1e-5).all()
