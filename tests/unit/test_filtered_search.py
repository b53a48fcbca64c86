"""Filtered vector and hybrid search against exact brute force (tags, parents, timestamps, Dify metadata), on both
engines and both paths of ``search/ann.py``'s plan (exact over the candidates; HNSW oversampled and post-filtered);
and the embedded store's exact matrix kept in step with its HNSW index and the database."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest

from alexandria.config import Settings
from alexandria.domain.filters import DocumentFilter, FilterSet, matches_all
from alexandria.domain.metadata_filter import MetadataCondition, MetadataFilter
from alexandria.domain.models import DataSource, SearchMode
from alexandria.ingest.chunkers import Section
from alexandria.search import ann
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from alexandria.storage.sqlite.store import SqliteStore
from alexandria.storage.sqlite.vector_matrix import VectorMatrix
from tests.conftest import make_tenant
from tests.fakes import HashingEmbedder

pytestmark = pytest.mark.backends("sqlite", "postgres")

T0 = 1_700_000_000_000
VOCAB = [f"w{i}" for i in range(400)]
TAGS = ["red", "green", "blue", "rare"]
FOLDERS = ["f1", "f2", "f3", "f4"]
AUTHORS = ["ada", "bob", "cy"]


def open_core(settings: Settings) -> Core:
    core = Core(settings)
    core.embedders.register("fake", HashingEmbedder())
    return core


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(20, 80)))  # 1 to 3 chunks of 32 tokens


def upsert(core: Core, ds: DataSource, rng: random.Random, doc_id: str) -> None:
    tags = [t for t in TAGS[:3] if rng.random() < 0.3] + (["rare"] if rng.random() < 0.05 else [])
    parents = (doc_id, *rng.sample(FOLDERS, rng.randint(0, 2)))
    req = UpsertRequest(doc_id, Section(None, text(rng), ()), tags=tuple(tags), parents=parents,
                        timestamp=T0 + rng.randint(0, 1000))  # fmt: skip
    core.documents.upsert(ds, req, T0)


def build(core: Core, ds: DataSource, docs: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(docs):
        upsert(core, ds, rng, f"d{i}")
    for pk in core.store.documents_by_pk(list(range(1, docs + 1)), with_text=False):
        core.store.set_doc_metadata(pk, {"author": rng.choice(AUTHORS), "year": rng.randint(1990, 1999)})


FILTERS = [
    FilterSet((DocumentFilter(tags_in=("red",)),)),
    FilterSet((DocumentFilter(tags_in=("rare",)),)),
    FilterSet((DocumentFilter(tags_not=("red", "green")),)),
    FilterSet((DocumentFilter(parents_in=("f1", "f3")),)),
    FilterSet((DocumentFilter(parents_not=("f2",), timestamp_gt=T0 + 200),)),
    FilterSet((DocumentFilter(timestamp_gt=T0 + 100, timestamp_lt=T0 + 700),)),
    FilterSet((DocumentFilter(metadata=MetadataFilter("and", (MetadataCondition("author", "is", "ada"),))),)),
    FilterSet(
        (
            DocumentFilter(tags_in=("blue", "green")),
            DocumentFilter(metadata=MetadataFilter("or", (MetadataCondition("year", "≥", 1995),))),
        )
    ),
    FilterSet((DocumentFilter(tags_in=("nothing",)),)),
]


def brute_force(core: Core, ds: DataSource, query: np.ndarray, filters: FilterSet) -> dict[int, float]:
    """Every chunk passing the filters, with its cosine to the query, from the chunks' texts re-embedded."""
    docs = core.store.documents_by_pk(list(range(1, 10_000)), with_text=False)
    passing = [pk for pk, d in docs.items() if d.data_source_id == ds.id and matches_all(d, filters)]
    chunks = core.store.chunks_of_documents(passing)
    if not chunks:
        return {}
    vectors = core.embedders.get("fake").embed([c.text for c in chunks])
    return {c.pk: float(s) for c, s in zip(chunks, vectors @ query, strict=True)}


@pytest.fixture(params=["exact", "ann"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "ann":  # every candidate set above k goes to HNSW, however small
        monkeypatch.setattr(ann, "EXACT_PER_EF", 0)
    yield str(request.param)


def test_filtered_search_equals_brute_force(settings: Settings, path: str) -> None:
    settings = settings.model_copy(update={"exact_search_max_candidates": 20_000 if path == "exact" else 0})
    core = open_core(settings)
    t = make_tenant(core, "w1")
    build(core, t.ds, 160, seed=1)
    rng = random.Random(2)
    embedder = core.embedders.get("fake")
    recalls = []
    for filters in FILTERS:
        for _ in range(3):
            words = " ".join(rng.sample(VOCAB, 6))
            query = embedder.embed([words])[0]
            truth = brute_force(core, t.ds, query, filters)
            best = sorted(truth.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
            got = core.store.vector_search(t.ds, query, filters, 10)
            assert all(h.pk in truth and abs(h.score - truth[h.pk]) < 1e-4 for h in got), filters
            assert len(got) == len(best)
            if path == "exact":
                assert np.allclose([h.score for h in got], [s for _, s in best], atol=1e-5), filters
            if best:  # recall, ties at the k-th score counted as found (the hashing vectors tie often)
                recalls.append(sum(truth[h.pk] >= best[-1][1] - 1e-6 for h in got) / len(best))
            hybrid = core.search.rank_chunks(t.ds, words, SearchMode.HYBRID, filters, 10)
            for h in hybrid:
                assert h.chunk_pk in truth
                assert h.vector_score is not None and abs(h.vector_score - truth[h.chunk_pk]) < 1e-4
    assert np.mean(recalls) >= (1.0 if path == "exact" else 0.95)
    core.close()


def test_filtered_keyword_search_and_chosen_chunks_bm25_agree_with_the_unfiltered_ranking(settings: Settings) -> None:
    """A filtered keyword search returns exactly the passing chunks of the unfiltered full ranking, in order, with the
    same BM25; ``keyword_scores`` gives chosen chunks that same BM25 (chunks matching no term, and other data
    sources' chunks, left out); and hybrid candidates carry it for every vector-only candidate."""
    core = open_core(settings)
    t, other = make_tenant(core, "w1"), make_tenant(core, "w2")
    build(core, t.ds, 160, seed=3)
    build(core, other.ds, 20, seed=4)
    rng = random.Random(5)
    docs = core.store.documents_by_pk(list(range(1, 10_000)), with_text=False)
    for filters in FILTERS[:6]:
        words = " ".join(rng.sample(VOCAB, 4))
        full = core.store.keyword_search(t.ds, words, FilterSet(), 10_000)
        by_pk = {h.pk: h.score for h in full}
        chunks = core.store.load_chunks(list(by_pk))
        passing = [h for h in full if matches_all(docs[chunks[h.pk].document_pk], filters)]
        got = core.store.keyword_search(t.ds, words, filters, 10)
        assert [h.pk for h in got] == [h.pk for h in passing[:10]], filters
        assert np.allclose([h.score for h in got], [h.score for h in passing[:10]], rtol=1e-5)
        chosen = [h.pk for h in full[::7]] + [c.pk for c in core.store.chunks_of_documents(list(docs)[:3])]
        foreign = [c.pk for c in core.store.chunks_of_documents([pk for pk, d in docs.items()
                                                                 if d.data_source_id == other.ds.id])]  # fmt: skip
        scored = core.store.keyword_scores(t.ds, words, chosen + foreign)
        assert set(scored) == {pk for pk in chosen if pk in by_pk}  # no match and foreign chunks left out
        assert all(abs(scored[pk] - by_pk[pk]) < 1e-4 * by_pk[pk] for pk in scored)
        cands = core.search.candidates(t.ds, words, filters, 10)
        for pk in cands.vector_ranked:
            assert (pk in cands.keyword) == (pk in by_pk), filters
            if pk in by_pk:
                assert abs(cands.keyword[pk] - by_pk[pk]) < 1e-4 * by_pk[pk]
    core.close()


@pytest.mark.backends("sqlite")
def test_matrix_in_step_after_upserts_deletes_restarts_and_crashes(settings: Settings) -> None:
    core = open_core(settings)
    t = make_tenant(core, "w1")
    rng = random.Random(4)
    build(core, t.ds, 60, seed=3)
    query = core.embedders.get("fake").embed([" ".join(rng.sample(VOCAB, 6))])[0]
    flt = FilterSet((DocumentFilter(tags_in=("red",)),))
    core.store.vector_search(t.ds, query, flt, 5)
    assert_in_step(core, t.ds)
    for i in range(0, 60, 3):  # replaced chunks
        upsert(core, t.ds, rng, f"d{i}")
    for i in range(1, 60, 7):
        core.documents.delete(t.ds, f"d{i}")
    assert_in_step(core, t.ds)
    core.close()

    core = open_core(settings)  # restart: index and matrix from their files
    core.store.vector_search(t.ds, query, flt, 5)
    assert_in_step(core, t.ds)
    upsert(core, t.ds, rng, "late")
    core.documents.delete(t.ds, "d2")
    core.store.engine.close()  # type: ignore[attr-defined]  # a crash: nothing saved

    core = open_core(settings)
    core.store.vector_search(t.ds, query, flt, 5)  # reconciled
    assert_in_step(core, t.ds)
    core.close()
    (settings.data_dir / "vectors" / "ds_1.slots.npz").write_bytes(b"garbage")  # a corrupt matrix is rebuilt
    core = open_core(settings)
    core.store.vector_search(t.ds, query, flt, 5)
    assert_in_step(core, t.ds)
    core.close()


def assert_in_step(core: Core, ds: DataSource) -> None:
    store = core.store
    assert isinstance(store, SqliteStore)
    rows = (
        store.engine.reader()
        .execute("SELECT id, document_pk, vector FROM chunks WHERE data_source_id = ? ORDER BY id", (ds.id,))
        .fetchall()
    )
    db_ids = np.array([r[0] for r in rows], dtype=np.int64)
    index = store.vectors.get(ds.id, ds.dim)
    assert index.matrix_ok
    assert sorted(np.asarray(index.index.keys, dtype=np.int64).tolist()) == db_ids.tolist()
    m = index.matrix
    live = np.flatnonzero(m.alive[: m.rows])
    order = np.argsort(m.keys[live])
    assert m.keys[live][order].tolist() == db_ids.tolist()
    assert m.docs[live][order].tolist() == [r[1] for r in rows]
    stored = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
    ids, _ = m.scored(m.rows_of(db_ids), np.zeros(ds.dim, dtype=np.float32))
    assert sorted(ids.tolist()) == db_ids.tolist()
    assert np.array_equal(np.asarray(m._mat)[live][order], stored)
    docs = np.unique([r[1] for r in rows])
    assert sorted(m.keys[m.rows_of_documents(docs[::2])].tolist()) == [r[0] for r in rows if r[1] in set(docs[::2])]


@pytest.mark.backends("sqlite")
def test_matrix_lookups_and_compaction(tmp_path: object, settings: Settings) -> None:
    m = VectorMatrix(settings.data_dir / "m.f32.npy", 4)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = np.arange(10, 10 + 3000, dtype=np.int64) * 2
    docs = ids // 6  # three chunks a document
    vecs = rng.standard_normal((3000, 4)).astype(np.float32)
    for start in range(0, 3000, 700):
        m.add(ids[start : start + 700], vecs[start : start + 700], docs[start : start + 700])
    gone = ids[rng.permutation(3000)[:1600]]
    for part in np.array_split(gone, 5):
        m.remove(part)
    assert m.dead < 1600  # compacted on the way
    kept = np.setdiff1d(ids, gone)
    assert len(m) == len(kept)
    q = np.array([1, 0, 0, 0], dtype=np.float32)
    got, scores = m.top(m.rows_of(ids), q, 7)
    want = kept[np.argsort(-vecs[np.searchsorted(ids, kept)][:, 0], kind="stable")][:7]
    assert got.tolist() == want.tolist()
    assert np.allclose(scores, vecs[np.searchsorted(ids, got)][:, 0])
    some = np.unique(docs)[::5]
    assert sorted(m.keys[m.rows_of_documents(some)].tolist()) == sorted(kept[np.isin(kept // 6, some)].tolist())
    assert m.documents_of(np.array([ids[0], 1, kept[3]])).tolist()[1:] == [-1, kept[3] // 6]
    m.save(7)
    again = VectorMatrix(settings.data_dir / "m.f32.npy", 4)
    assert not again.load(6) and again.load(7)
    assert again.top(again.rows_of(ids), q, 7)[0].tolist() == want.tolist()
    again.add(np.array([99_999]), np.array([[5, 0, 0, 0]], dtype=np.float32), np.array([1]))  # copy-on-write
    assert again.top(again.rows_of(np.array([99_999, *kept])), q, 1)[0].tolist() == [99_999]


class LatinOnly(HashingEmbedder):
    @property
    def scripts(self) -> frozenset[str] | None:
        return frozenset({"LATIN"})


def test_hybrid_candidates_say_whether_the_model_knows_the_querys_script(settings: Settings) -> None:
    core = Core(settings)
    core.embedders.register("fake", LatinOnly())
    t = make_tenant(core, "w1")
    for i, text in enumerate(["w1 w2 w3 mitochondria", "中国的首都 北京 w1", "عاصمة مصر القاهرة w2"]):
        core.documents.upsert(t.ds, UpsertRequest(f"d{i}", Section(None, text, ())), T0)
    verdicts = {q: core.search.candidates(t.ds, q, FilterSet(), 10).vector_applies
                for q in ("mitochondria w1", "中国的首都", "عاصمة مصر", "42")}  # fmt: skip
    assert verdicts == {"mitochondria w1": True, "中国的首都": False, "عاصمة مصر": False, "42": True}
    # keyword alone ranks the foreign-script query under the default fusion: its one match comes first
    hits = core.search.rank_chunks(t.ds, "中国的首都", SearchMode.HYBRID, FilterSet(), 3)
    assert (
        hits
        and hits[0].keyword_score is not None
        and hits[0].score == pytest.approx(hits[0].keyword_score / core.store.keyword_score_bound(t.ds, "中国的首都"))
    )
    core.close()


@pytest.mark.backends("sqlite")
def test_a_resolved_filter_is_reused_only_while_nothing_changed(settings: Settings) -> None:
    """The embedded store's filter memo: a repeated filter is resolved once, and any commit (a document's parents
    changed here, or by another process's store on the same files) is seen by the very next search."""
    core = open_core(settings)
    t = make_tenant(core, "w1")
    build(core, t.ds, 60, seed=7)
    store = core.store
    assert isinstance(store, SqliteStore)
    flt = FilterSet((DocumentFilter(parents_in=("f1",)),))
    query = core.embedders.get("fake").embed(["w1 w2 w3 w4"])[0]
    resolved: list[int] = []
    original = SqliteStore.candidate_documents

    def counting(self: SqliteStore, ds: DataSource, filters: FilterSet) -> np.ndarray:
        resolved.append(1)
        return original(self, ds, filters)

    SqliteStore.candidate_documents = counting  # type: ignore[method-assign]
    try:
        first = store.vector_search(t.ds, query, flt, 10_000)
        assert store.vector_search(t.ds, query, flt, 10_000) == first
        assert store.keyword_search(t.ds, "w1 w2 w3 w4", flt, 10_000) is not None
        assert len(resolved) == 1  # one resolution for three searches
        docs = store.documents_by_pk(list(range(1, 1_000)), with_text=False)
        outside = next(d for d in docs.values() if "f1" not in d.parents)
        assert core.documents.update_parents(t.ds, outside.document_id, (outside.document_id, "f1"), "f1")
        after = {h.pk for h in store.vector_search(t.ds, query, flt, 10_000)}
        assert len(resolved) == 2
        mine = {c.pk for c in store.chunks_of_documents([outside.pk])}
        assert mine and mine <= after and {h.pk for h in first} == after - mine
        other = open_core(settings)  # another process's store on the same files
        try:
            assert other.documents.update_parents(t.ds, outside.document_id, (outside.document_id,), None)
        finally:
            other.close()
        assert {h.pk for h in store.vector_search(t.ds, query, flt, 10_000)} == {h.pk for h in first}
    finally:
        SqliteStore.candidate_documents = original  # type: ignore[method-assign]
    core.close()


def test_deeper_candidates_narrowed_are_the_candidates_of_a_shallower_search(settings: Settings) -> None:
    """``Candidates.top(n)`` (what ``alexandria eval`` fuses from its 300-deep lists) is what a search ``n`` deep
    gathers, scores included (up to the order of chunks tied at the n-th score), so eval's hybrid is the server's."""
    core = open_core(settings)
    t = make_tenant(core, "w1")
    build(core, t.ds, 160, seed=9)
    rng = random.Random(10)
    for _ in range(5):
        words = " ".join(rng.sample(VOCAB, 5))
        deep, shallow = (
            core.search.candidates(t.ds, words, FilterSet(), 300),
            core.search.candidates(t.ds, words, FilterSet(), 20),
        )
        narrowed = deep.top(20)
        for ranked, scores in (("keyword_ranked", "keyword"), ("vector_ranked", "vector")):
            want, got = getattr(shallow, ranked), getattr(narrowed, ranked)
            assert len(want) == len(got)
            last = getattr(shallow, scores)[want[-1]] if want else None
            untied = [k for k in want if getattr(shallow, scores)[k] != last]
            assert got[: len(untied)] == untied
        common = set(shallow.ids()) & set(narrowed.ids())
        assert len(common) >= len(shallow.ids()) - 4
        for k in common:
            assert shallow.keyword.get(k) == pytest.approx(narrowed.keyword.get(k))
            assert shallow.vector[k] == pytest.approx(narrowed.vector[k])
        assert (narrowed.keyword_bound, narrowed.vector_applies) == (shallow.keyword_bound, shallow.vector_applies)
    core.close()


@pytest.mark.backends("sqlite")
def test_matrix_top_breaks_ties_by_id_whatever_the_row_order(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    ids = np.arange(1, 401, dtype=np.int64)
    vecs = np.tile(np.array([[0.6, 0.8, 0.0, 0.0]], dtype=np.float32), (400, 1))
    vecs[ids % 5 == 0] = [1.0, 0.0, 0.0, 0.0]  # 80 ids score higher; the other 320 all tie
    q = np.array([1, 0, 0, 0], dtype=np.float32)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(400)
        m = VectorMatrix(settings.data_dir / f"t{seed}.f32.npy", 4)
        m.add(ids[order], vecs[order], ids[order])
        got, _ = m.top(m.rows_of(ids), q, 100)
        assert got.tolist() == [*range(5, 401, 5), *[i for i in range(1, 401) if i % 5][:20]]
