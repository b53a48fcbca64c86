"""The embedded store's keyword index (tantivy): BM25 top-k equal to a brute-force BM25 over the same analysed terms,
filtered search exact on both of its paths, scores of given chunks, the score bound, and the index kept in step with
the database across restarts, crashes, deletes and the upgrade from FTS5."""

from __future__ import annotations

import math
import random
import shutil
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from alexandria.config import Settings
from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.ingest.chunkers import Section
from alexandria.search.analysis import document_terms, query_terms
from alexandria.search.keyword import BM25_B, BM25_K1, bm25_idf
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from alexandria.storage.sqlite import keyword_index
from alexandria.storage.sqlite.keyword_index import DataSourceKeywords
from alexandria.storage.sqlite.store import SqliteStore
from tests.conftest import make_tenant
from tests.fakes import HashingEmbedder

T0 = 1_700_000_000_000
VOCAB = [f"{stem}{suffix}" for stem in ("alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa") for suffix in
         ("", "s", "ing", "ed", "x", "y", "z")]  # fmt: skip


def brute_force(docs: dict[int, str], query: str) -> dict[int, float]:
    """BM25 (k1 1.2, b 0.75, IDF ln(1 + (N - n + 0.5)/(n + 0.5))) of every matching chunk, from scratch."""
    analysed = {pk: document_terms(text) for pk, text in docs.items()}
    n_docs = len(analysed)
    avgdl = sum(len(t) for t in analysed.values()) / n_docs
    terms = query_terms(query)
    df = {t: sum(1 for a in analysed.values() if t in a) for t in terms}
    out: dict[int, float] = {}
    for pk, a in analysed.items():
        tf = Counter(a)
        score = 0.0
        for t in terms:
            if tf[t]:
                norm = BM25_K1 * (1 - BM25_B + BM25_B * len(a) / avgdl)
                score += bm25_idf(n_docs, df[t]) * tf[t] * (BM25_K1 + 1) / (tf[t] + norm)
        if score > 0:
            out[pk] = score
    return out


def corpus(rng: random.Random, n: int) -> dict[int, str]:
    # at most 40 terms: tantivy stores a chunk's length exactly up to 40 (one-byte field norms above)
    return {3 * i + 7: " ".join(rng.choice(VOCAB[: rng.randint(3, len(VOCAB))]) for _ in range(rng.randint(1, 40)))
            for i in range(n)}  # fmt: skip


def assert_ranked(got: list[tuple[int, float]], want: dict[int, float], k: int) -> None:
    ranked = sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))
    assert len(got) == min(k, len(ranked))
    for (pk, score), (_, want_score) in zip(got, ranked, strict=False):
        assert math.isclose(score, want.get(pk, -1.0), rel_tol=1e-5), (pk, score, want.get(pk))
        assert math.isclose(score, want_score, rel_tol=1e-5)  # the same scores in the same order: ties may swap


@pytest.fixture
def index(tmp_path: Path) -> DataSourceKeywords:
    return DataSourceKeywords(tmp_path / "ds_1")


def test_top_k_equals_brute_force_bm25(index: DataSourceKeywords) -> None:
    rng = random.Random(3)
    docs = corpus(rng, 400)
    index.rebuild(list(docs.items())[:250], version=1)
    index.apply([], list(docs.items())[250:], version=2)  # two segments: statistics are the index's, not a segment's
    for _ in range(40):
        query = " ".join(rng.sample(VOCAB, rng.randint(1, 4)))
        want = brute_force(docs, query)
        for k in (1, 10, 1000):
            assert_ranked(index.search(query_terms(query), k), want, k)
        chosen = rng.sample(sorted(docs), 30)
        scores = dict(index.scores(query_terms(query), chosen))
        assert scores.keys() == {pk for pk in chosen if pk in want}
        for pk, score in scores.items():
            assert math.isclose(score, want[pk], rel_tol=1e-5)
        bound = index.score_bound(query_terms(query))
        assert all(s <= bound for s in want.values())


@pytest.mark.parametrize("term_set_max", [0, 1_000_000], ids=["oversampled", "term-set"])
def test_filtered_search_is_exact(
    index: DataSourceKeywords, term_set_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keyword_index, "TERM_SET_MAX", term_set_max)
    rng = random.Random(5)
    docs = corpus(rng, 300)
    index.rebuild(list(docs.items()), version=1)
    for _ in range(40):
        query = " ".join(rng.sample(VOCAB, rng.randint(1, 3)))
        share = rng.choice([0.01, 0.1, 0.5, 0.95])
        candidates = [pk for pk in docs if rng.random() < share]
        want = {pk: s for pk, s in brute_force(docs, query).items() if pk in set(candidates)}
        for k in (1, 5, 50):
            assert_ranked(index.search_within(query_terms(query), k, candidates), want, k)


def test_deletes_keep_small_indexes_exact(index: DataSourceKeywords) -> None:
    rng = random.Random(11)
    docs = corpus(rng, 200)
    index.rebuild(list(docs.items()), version=1)
    gone = rng.sample(sorted(docs), 50)
    index.apply(gone, [], version=2)
    assert index.needs_compaction()  # small: rebuilt after deletes, so N, df and avgdl count live chunks only
    live = {pk: t for pk, t in docs.items() if pk not in gone}
    index.rebuild(list(live.items()), version=2)
    assert not index.needs_compaction() and sorted(index.ids()) == sorted(live)
    query = "alpha betas gamma"
    assert_ranked(index.search(query_terms(query), 20), brute_force(live, query), 20)


# --- through the store: kept in step with SQLite ----------------------------------------------------------------


def open_core(settings: Settings) -> Core:
    core = Core(settings)
    core.embedders.register("fake", HashingEmbedder())
    return core


def keyword_ids(core: Core, query: str, filters: FilterSet | None = None) -> list[str]:
    ds = core.catalog.data_source(core.catalog.workspace("w1"), "docs")
    hits = core.store.keyword_search(ds, query, filters or FilterSet(), 50)
    docs = core.store.documents_by_pk([h.pk for h in hits], with_text=False)
    return [docs[h.pk].document_id for h in hits]


def put(core: Core, doc_id: str, text: str, tags: tuple[str, ...] = ()) -> None:
    ds = core.catalog.data_source(core.catalog.workspace("w1"), "docs")
    core.documents.upsert(ds, UpsertRequest(doc_id, Section(None, text, ()), tags=tags), T0)


def test_persists_and_is_rebuilt_when_missing_or_stale(settings: Settings) -> None:
    core = open_core(settings)
    make_tenant(core, "w1")
    for i in range(20):
        put(core, f"d{i}", f"{VOCAB[i]} shared words {i}", tags=("even",) if i % 2 == 0 else ())
    before = keyword_ids(core, "alpha betas shared")
    assert before[0] in ("d0", "d8") and len(before) == 20
    even = FilterSet((DocumentFilter(tags_in=("even",)),))
    assert set(keyword_ids(core, "shared", even)) == {f"d{i}" for i in range(0, 20, 2)}
    core.close()

    core = open_core(settings)  # restart: the index is found in step, nothing rebuilt
    kw_dir = settings.data_dir / "keyword" / "ds_1"
    assert keyword_ids(core, "alpha betas shared") == before
    # "crash": SQLite committed, the keyword index never heard of it (its mirror skipped)
    store = core.store
    assert isinstance(store, SqliteStore)
    store.keywords.get(1).version = -99  # out of step: the next change is not mirrored
    put(core, "late", "omega omega late arrival")
    ds = core.catalog.data_source(core.catalog.workspace("w1"), "docs")
    core.documents.delete(ds, "d3")
    core.close()

    core = open_core(settings)  # the sidecar is behind the database: reconciled at the first search
    got = keyword_ids(core, "omega late arrival")
    assert got[0] == "late" and "d3" not in keyword_ids(core, "shared")
    core.close()

    shutil.rmtree(kw_dir)  # missing: rebuilt from the chunk rows
    core = open_core(settings)
    assert keyword_ids(core, "omega late arrival")[0] == "late"
    assert len(keyword_ids(core, "shared")) == 19
    core.close()
    for f in kw_dir.glob("*.idx"):  # corrupt: discarded, rebuilt
        f.write_bytes(b"garbage")
    core = open_core(settings)
    assert keyword_ids(core, "omega late arrival")[0] == "late"
    core.close()


def test_deleting_a_data_source_removes_its_index(settings: Settings) -> None:
    core = open_core(settings)
    t = make_tenant(core, "w1")
    put(core, "a", "alpha beta")
    assert (settings.data_dir / "keyword" / "ds_1").is_dir()
    assert core.store.delete_data_source(t.ds)
    assert not (settings.data_dir / "keyword" / "ds_1").exists()
    core.close()


def test_upgrade_from_fts5_builds_the_index_then_drops_the_table(settings: Settings) -> None:
    core = open_core(settings)
    make_tenant(core, "w1")
    for i in range(12):
        put(core, f"d{i}", f"{VOCAB[i]} upgrade text {i}")
    want = keyword_ids(core, "alpha upgrade")
    core.close()
    # a data directory from before: an FTS5 table per data source, no keyword index
    shutil.rmtree(settings.data_dir / "keyword")
    db = settings.data_dir / "alexandria.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE VIRTUAL TABLE fts_1 USING fts5(text, content='chunks', content_rowid='id', "
                     "tokenize='porter unicode61 remove_diacritics 2')")  # fmt: skip
        conn.execute("INSERT INTO fts_1 (fts_1) VALUES ('rebuild')")
    core = open_core(settings)
    with sqlite3.connect(db) as conn:
        left = conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'fts%'").fetchall()
    assert left == []  # the table and its shadow tables
    assert (settings.data_dir / "keyword" / "ds_1").is_dir()  # built at open, before any search
    assert keyword_ids(core, "alpha upgrade") == want
    core.close()


@pytest.mark.parametrize("term_set_max", [0, 1_000_000], ids=["oversampled", "term-set"])
def test_store_filtered_keyword_search_is_exact(
    settings: Settings, term_set_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the store: candidates from SQL (tags, parents), the same ranking as the unfiltered one restricted."""
    monkeypatch.setattr(keyword_index, "TERM_SET_MAX", term_set_max)
    core = open_core(settings)
    t = make_tenant(core, "w1")
    rng = random.Random(9)
    tagged: dict[str, set[str]] = {"t1": set(), "t2": set()}
    for i in range(60):
        tags = tuple(tag for tag in tagged if rng.random() < (0.5 if tag == "t1" else 0.1))
        for tag in tags:
            tagged[tag].add(f"d{i}")
        text = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(3, 25)))
        core.documents.upsert(t.ds, UpsertRequest(f"d{i}", Section(None, text, ()), tags=tags), T0)
    pk_doc = {pk: d.document_id for pk, d in core.store.documents_by_pk(list(range(1, 100)), with_text=False).items()}
    for _ in range(20):
        query = " ".join(rng.sample(VOCAB, rng.randint(1, 3)))
        everything = core.store.keyword_search(t.ds, query, FilterSet(), 1000)
        for tag, docs in tagged.items():
            k = rng.choice([1, 3, 10])
            got = core.store.keyword_search(t.ds, query, FilterSet((DocumentFilter(tags_in=(tag,)),)), k)
            chunks = {c.pk: c.document_pk for c in core.store.chunks_of_documents(list(pk_doc))}
            want = [h for h in everything if pk_doc[chunks[h.pk]] in docs][:k]
            assert [round(h.score, 5) for h in got] == [round(h.score, 5) for h in want], (query, tag)
            assert (
                {h.pk for h in got if h.score > want[-1].score + 1e-6}
                == {h.pk for h in want if h.score > want[-1].score + 1e-6}
                if want
                else got == []
            )
    core.close()


def test_chunks_tied_at_the_cut_are_chosen_by_id_whatever_the_indexs_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many chunks with the same text tie; the top k are those with the lowest ids, whether the index was built in
    one commit or one chunk at a time (segments in another order), filtered or not."""
    rows = [(pk, "mitochondria produce energy" if pk % 3 else "ribosomes build proteins") for pk in range(1, 301)]
    one = DataSourceKeywords(tmp_path / "one")
    one.rebuild(rows, version=1)
    many = DataSourceKeywords(tmp_path / "many")
    many.rebuild([], version=0)
    for i, row in enumerate(reversed(rows), start=1):
        many.apply([], [row], version=i)
    monkeypatch.setattr(keyword_index, "TERM_SET_MAX", 10)  # a filter's candidates: oversampled, post-filtered
    terms = query_terms("mitochondria energy")
    tied = sorted(pk for pk, text in rows if text.startswith("mito"))
    for index in (one, many):
        assert [pk for pk, _ in index.search(terms, 10)] == tied[:10]
        allowed = [pk for pk in tied if pk % 2]
        assert [pk for pk, _ in index.search_within(terms, 5, allowed)] == allowed[:5]
