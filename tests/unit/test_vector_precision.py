"""The embedded store's HNSW graph keeps its vectors in reduced precision: every result it returns is scored again
from the exact f32 matrix, and an index saved in another precision (an older data directory's f32 files) is
converted when it is loaded, without losing a vector."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

# onnxruntime before usearch: the other order segfaults (see storage/sqlite/vectors.py)
import onnxruntime  # noqa: F401
import pytest
from usearch.index import Index

from alexandria.config import Settings
from alexandria.domain.filters import FilterSet
from alexandria.ingest.chunkers import Section
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from alexandria.storage.sqlite.vectors import INDEX_DTYPE, DataSourceIndex, HnswParams, VectorIndexes
from tests.conftest import make_tenant
from tests.fakes import HashingEmbedder

T0 = 1_700_000_000_000
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()
Floats = npt.NDArray[np.float32]


def clustered(rng: np.random.Generator, n: int, dim: int) -> Floats:
    """Unit vectors around a few centres (HNSW on i.i.d. random vectors says little)."""
    centres = rng.standard_normal((12, dim))
    v = centres[rng.integers(0, 12, n)] + 0.35 * rng.standard_normal((n, dim))
    out: Floats = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return out


def saved_dtype(path: Path) -> str:
    meta = Index.metadata(str(path))
    assert meta is not None
    return str(meta["kind_scalar"].name).lower()


def recall_at_10(dtype: str, vectors: Floats, queries: Floats, path: Path) -> float:
    """Recall@10 against exact search of a ``dtype`` index over ``vectors``, checking every result's score."""
    index = DataSourceIndex(path, vectors.shape[1], HnswParams(dtype=dtype))
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
    index.add(ids, vectors, ids // 10)
    assert str(index.index.dtype.name).lower() == dtype
    hits = 0
    for query in queries:
        got, scores = index.search(query, 10, ef=200)
        assert len(got) == 10
        exact = np.array([np.dot(vectors[i - 1].astype(np.float64), query) for i in got])
        np.testing.assert_allclose(scores, exact, rtol=0, atol=1e-6)  # HNSW's own f16/i8 distances are far off
        assert np.all(np.diff(scores) <= 0)  # best first, by the exact score
        truth = np.argsort(-(vectors @ query))[:10] + 1
        hits += len(set(got.tolist()) & set(truth.tolist()))
    return hits / (10 * len(queries))


@pytest.mark.parametrize("dtype", ["f16", "i8"])
def test_hnsw_scores_are_exact_cosines_in_exact_order_and_recall_holds(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(5)
    vectors = clustered(rng, 4_000, 64)
    queries = clustered(rng, 40, 64)
    reduced = recall_at_10(dtype, vectors, queries, tmp_path / "ds_1.usearch")
    full = recall_at_10("f32", vectors, queries, tmp_path / "ds_2.usearch")
    assert reduced >= full - 0.03, (reduced, full)  # a graph built in another order differs a little either way


def open_core(settings: Settings) -> Core:
    core = Core(settings)
    core.embedders.register("fake", HashingEmbedder())
    return core


def fill(core: Core, n: int) -> None:
    t = make_tenant(core, "w1")
    rng = random.Random(11)
    for i in range(n):
        text = " ".join(rng.sample(WORDS, 5))
        core.documents.upsert(t.ds, UpsertRequest(f"d{i}", Section(None, text, ())), T0)


def check_search(core: Core, n_chunks: int) -> None:
    """HNSW (the small ef makes the store search the graph) returns the exact cosines of the stored vectors."""
    ws = core.catalog.workspace("w1")
    ds = core.catalog.data_source(ws, "docs")
    index = core.store.vectors.get(ds.id, ds.dim)  # type: ignore[attr-defined]
    embedder = core.embedders.get("fake")
    for words in (WORDS[:3], WORDS[5:9], WORDS[-4:]):
        query = embedder.embed([" ".join(words)])[0]
        hits = core.store.vector_search(ds, query, FilterSet(), 10)
        assert len(hits) == 10
        pks, stored = core.store.chunk_vectors([h.pk for h in hits], ds.dim)
        by_pk = dict(zip(pks, stored, strict=True))
        exact = [float(np.dot(by_pk[h.pk], query)) for h in hits]
        np.testing.assert_allclose([h.score for h in hits], exact, rtol=0, atol=1e-6)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(index) == len(index.matrix) == n_chunks
    assert str(index.index.dtype.name).lower() == INDEX_DTYPE


def test_an_f32_index_from_an_older_data_directory_is_converted(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", hnsw_expansion_search=12)
    core = open_core(settings)
    fill(core, 400)
    check_search(core, 400)
    core.close()
    path = settings.data_dir / "vectors" / "ds_1.usearch"
    # the data directory as an older release left it: the same graph's vectors saved as f32
    old = DataSourceIndex(path, 64, HnswParams(dtype="f32"))
    old.load()  # converts to f32, from the matrix
    assert str(old.index.dtype.name).lower() == "f32" and len(old) == 400
    old.save()
    assert saved_dtype(path) == "f32"
    version = old.version

    core = open_core(settings)
    check_search(core, 400)
    ds = core.catalog.data_source(core.catalog.workspace("w1"), "docs")
    assert core.store.vectors.get(ds.id, ds.dim).version == version  # type: ignore[attr-defined]  # from the matrix
    core.close()
    assert saved_dtype(path) == INDEX_DTYPE  # saved converted: the next start loads it as it is

    core = open_core(settings)
    check_search(core, 400)
    core.close()


def test_an_f32_index_without_its_matrix_is_rebuilt_from_the_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", hnsw_expansion_search=12)
    core = open_core(settings)
    fill(core, 300)
    core.close()
    path = settings.data_dir / "vectors" / "ds_1.usearch"
    old = DataSourceIndex(path, 64, HnswParams(dtype="f32"))
    old.load()
    old.save()
    assert saved_dtype(path) == "f32"
    for matrix_file in path.parent.glob("ds_1.*.np*"):
        matrix_file.unlink()

    core = open_core(settings)
    check_search(core, 300)
    core.close()
    assert saved_dtype(path) == INDEX_DTYPE


def test_loading_one_index_holds_up_no_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Converting an index takes minutes at a million vectors: other data sources' indexes stay usable meanwhile,
    and the one loading is handed out only behind its lock."""
    indexes = VectorIndexes(tmp_path, HnswParams())
    started, release = threading.Event(), threading.Event()
    original = DataSourceIndex.load

    def slow(self: DataSourceIndex) -> None:
        if self.path.name == "ds_1.usearch":
            started.set()
            assert release.wait(60)
        original(self)

    monkeypatch.setattr(DataSourceIndex, "load", slow)
    first = threading.Thread(target=indexes.get, args=(1, 8))
    first.start()
    try:
        assert started.wait(60)
        got: list[DataSourceIndex] = []
        other = threading.Thread(target=lambda: got.append(indexes.get(2, 8)))
        other.start()
        other.join(60)
        assert got and got[0].path.name == "ds_2.usearch"  # not held up by data source 1's load
        loading = indexes.get(1, 8)
        assert not loading.lock.acquire(blocking=False)  # still loading: its users wait on its lock
    finally:
        release.set()
        first.join(60)
    assert loading.lock.acquire(blocking=False)
    loading.lock.release()
