"""Embedding lanes: document embeddings on the one lower-priority write-lane thread, query embeddings inline."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from alexandria.config import Settings
from alexandria.ingest.base import Vectors
from alexandria.ingest.embedders import MiniLMEmbedder
from alexandria.services.embedders import EmbedderRegistry
from alexandria.services.lanes import THREAD_NAME, LaneEmbedder, QueryCache, WriteLane
from tests.fakes import HashingEmbedder

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")


class Recording(HashingEmbedder):
    """Records the thread and size of each embed call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int]] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.seen.append((threading.current_thread().name, len(texts)))
        return super().embed(texts)


@pytest.fixture
def lane() -> Iterator[WriteLane]:
    lane = WriteLane(nice=3)
    yield lane
    lane.close()


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


@linux_only
def test_the_lane_thread_runs_at_a_lower_priority(lane: WriteLane) -> None:
    mine = nice_of(threading.get_native_id())
    name, nice = lane.run(lambda: (threading.current_thread().name, nice_of(threading.get_native_id())))
    assert name.startswith(THREAD_NAME)
    assert nice == min(mine + 3, 19)
    assert nice_of(threading.get_native_id()) == mine  # the caller's own priority is untouched


def test_lane_embedder_batches_on_the_lane_and_matches_the_model(lane: WriteLane) -> None:
    inner = Recording()
    texts = [f"text number {i}" for i in range(5)]
    got = LaneEmbedder(inner, lane, batch=2).embed(texts)
    assert [n for _, n in inner.seen] == [2, 2, 1]
    assert all(name.startswith(THREAD_NAME) for name, _ in inner.seen)
    np.testing.assert_array_equal(got, HashingEmbedder().embed(texts))
    assert lane.pending == 0 and lane.submitted == 3


def test_running_on_the_lane_from_the_lane_does_not_deadlock(lane: WriteLane) -> None:
    assert lane.run(lambda: lane.run(lambda: 42)) == 42


def test_registry_writer_uses_the_lane_and_query_runs_inline(tmp_path: Path) -> None:
    registry = EmbedderRegistry(Settings(data_dir=tmp_path))
    model, query = Recording(), Recording()
    registry.register("x", model, query=query)
    try:
        registry.writer("x").embed(["a document"])
        registry.query("x").embed(["a query"])
        assert registry.get("x") is model
        assert [name for name, _ in model.seen] == [registry.write_lane.run(lambda: threading.current_thread().name)]
        assert query.seen == [(threading.current_thread().name, 1)]  # in the caller's thread
    finally:
        registry.close()


def ort_threads_niceness() -> dict[int, int]:
    out = {}
    for task in Path("/proc/self/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = int(fields[16])  # field 19 of stat: nice
    return out


@linux_only
def test_minilm_lanes_two_sessions_and_the_document_threads_inherit_the_lower_priority(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedder_threads=2, query_embedder_threads=1, embed_write_nice=4)
    base = nice_of(threading.get_native_id())
    before = set(ort_threads_niceness())
    registry = EmbedderRegistry(settings)
    try:
        docs, cache = registry.get("minilm"), registry.query("minilm")
        assert isinstance(cache, QueryCache)
        query = cache.inner
        assert isinstance(docs, MiniLMEmbedder) and isinstance(query, MiniLMEmbedder)
        assert docs.threads == 2 and query.threads == 1 and docs is not query
        texts = ["Mitochondria produce most of the ATP of a cell.", "how do cells make energy"]
        np.testing.assert_allclose(registry.writer("minilm").embed(texts), query.embed(texts), atol=1e-5)
        lowered = [tid for tid, nice in ort_threads_niceness().items() if tid not in before and nice == base + 4]
        assert len(lowered) >= 2  # the lane thread and ONNX Runtime's pool thread of the document session
    finally:
        registry.close()


def test_query_cache_returns_the_models_vectors_and_skips_it_for_repeats(tmp_path: Path) -> None:
    registry = EmbedderRegistry(Settings(data_dir=tmp_path, query_cache_size=2))
    query = Recording()
    registry.register("x", HashingEmbedder(), query=query)
    try:
        cached = registry.query("x")
        first = cached.embed(["alpha", "beta"])
        np.testing.assert_array_equal(first, HashingEmbedder().embed(["alpha", "beta"]))
        again = cached.embed(["beta", "alpha"])  # both remembered: the model is not called
        np.testing.assert_array_equal(again, first[::-1])
        assert [n for _, n in query.seen] == [2]
        cached.embed(["gamma"])  # the least recently used ("beta"... then "alpha" was used after it) goes out
        cached.embed(["beta", "alpha"])
        assert [n for _, n in query.seen] == [2, 1, 1]
        changed = cached.embed(["gamma"])
        changed[0][0] += 1.0  # a caller changing its result does not change what the cache hands out
        np.testing.assert_array_equal(cached.embed(["gamma"]), HashingEmbedder().embed(["gamma"]))
    finally:
        registry.close()


def test_query_cache_can_be_turned_off(tmp_path: Path) -> None:
    registry = EmbedderRegistry(Settings(data_dir=tmp_path, query_cache_size=0))
    query = Recording()
    registry.register("x", HashingEmbedder(), query=query)
    try:
        registry.query("x").embed(["alpha"])
        registry.query("x").embed(["alpha"])
        assert [n for _, n in query.seen] == [1, 1]
    finally:
        registry.close()
