"""Helpers of the congruence tests (``tests/unit/test_congruence.py``): two cores, one per storage engine, driven by
the same calls, and comparisons of their answers on keys that both engines share (primary keys may differ).

Rankings are compared the way qdrant-client compares its local and remote clients: the same length, the same score
at every rank (within a tolerance), and the same members in every group of tied scores; the group cut by ``k`` may
hold different members of the tie (each engine breaks ties on its own primary keys)."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from alexandria.config import Settings
from alexandria.domain.filters import FilterSet
from alexandria.domain.models import ChunkHit, DataSource, Document, SearchMode, Workspace
from alexandria.errors import AlexandriaError
from alexandria.services.core import Core
from alexandria.services.search import SearchRequest
from tests.fakes import HashingEmbedder

WORDS = (
    "alpha beta gamma delta epsilon zeta theta iota kappa lambda omicron sigma upsilon omega rho tau phi chi psi "
    "quark boson lepton"
).split()
TAGS = ["t1", "t2", "t3", "t4", "t5"]
FOLDERS = ["f1", "f2", "f3"]
IDS = [f"d{i}" for i in range(24)]
BM25 = {"rel": 1e-4, "abs_": 1e-12}  # IDFs floored at 1e-6 give scores of that order
COSINE = {"rel": 1e-5, "abs_": 1e-5}
FUSED = {"rel": 1e-4, "abs_": 1e-5}

Key = tuple[str, int]  # (document id or title, chunk offset or segment position): the same on both engines
Ranked = list[tuple[Key, float]]

DOC_FIELDS = (
    "document_id",
    "title",
    "mime_type",
    "source_url",
    "timestamp",
    "tags",
    "parents",
    "parent_id",
    "hash",
    "text_size",
    "chunk_count",
    "token_count",
    "text",
    "enabled",
    "archived",
    "index_state",
    "index_error",
    "doc_metadata",
)


@dataclass
class Side:
    """One engine's core, its workspace and the data source under test."""

    name: str
    core: Core
    ws: Workspace
    ds: DataSource = field(init=False)
    labels: dict[str, str] = field(default_factory=dict)  # Dify document uuid (random) -> a label both sides share

    def key(self, doc: Document) -> str:
        """The document's engine-independent name: its label if it has one, else its document id."""
        return self.labels.get(doc.uuid, doc.document_id)

    def label(self, doc: Document) -> str:
        """Label ``doc`` (in order of first sight: both sides label the same calls' documents alike)."""
        return self.labels.setdefault(doc.uuid, f"doc{len(self.labels)}")

    def unlabel(self, label: str) -> str:
        return next(uuid for uuid, name in self.labels.items() if name == label)


Pair = tuple[Side, Side]  # (SQLite, PostgreSQL)


def open_side(name: str, settings: Settings) -> Side:
    core = Core(settings)
    for embedder in ("fake", "minilm"):
        core.embedders.register(embedder, HashingEmbedder())
    ws, _ = core.catalog.ensure_workspace("w1")
    return Side(name, core, ws)


def open_pair(root: Path, pg_url: str, **overrides: Any) -> Pair:
    """The embedded SQLite store and the PostgreSQL store, with the same settings."""
    base: dict[str, Any] = {"max_document_mb": 1.0, "hybrid_candidates": 1000, **overrides}
    lite = open_side("sqlite", Settings(data_dir=root / "sqlite", database_url=None, **base))
    pg = open_side("postgres", Settings(data_dir=root / "postgres", database_url=pg_url, **base))
    return lite, pg


def outcome(fn: Callable[[], object]) -> object:
    """``fn()``'s result, or its domain error as ``(class name, message)`` (so that both engines' can be compared)."""
    try:
        return fn()
    except AlexandriaError as exc:
        return ("error", type(exc).__name__, str(exc))


def doc_view(doc: object, fields: Sequence[str] = DOC_FIELDS) -> dict[str, object] | None:
    """The fields of a document (table, segment...) that do not depend on the engine (no primary keys, no
    wall-clock times)."""
    return None if doc is None else {f: getattr(doc, f) for f in fields}


def close(a: float, b: float, rel: float, abs_: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def tie_groups(ranked: Ranked, rel: float, abs_: float) -> list[set[Key]]:
    """Consecutive runs of equal scores (within the tolerance), best first."""
    groups: list[set[Key]] = []
    first = math.nan
    for key, score in ranked:
        if groups and close(score, first, rel, abs_):
            groups[-1].add(key)
        else:
            groups.append({key})
            first = score
    return groups


def assert_same_ranking(what: str, a: Ranked, b: Ranked, k: int, rel: float, abs_: float) -> None:
    """``a`` (SQLite) and ``b`` (PostgreSQL) are the same top-``k`` ranking: same length, same score at each rank,
    same members in each tie group; when the list is full (``k`` long) the last group may differ in its members."""
    detail = f"{what}\n sqlite:   {a}\n postgres: {b}"
    assert len(a) == len(b), detail
    for (_, sa), (_, sb) in zip(a, b, strict=True):
        assert close(sa, sb, rel, abs_), detail
    for ranked in (a, b):
        scores = [s for _, s in ranked]
        assert all(x >= y or close(x, y, rel, abs_) for x, y in itertools.pairwise(scores)), detail
    ga, gb = tie_groups(a, rel, abs_), tie_groups(b, rel, abs_)
    assert len(ga) == len(gb), detail
    for i, (x, y) in enumerate(zip(ga, gb, strict=True)):
        if len(a) == k and i == len(ga) - 1:
            assert len(x) == len(y), detail  # the cut may fall inside a tie: any of its members
        else:
            assert x == y, detail


def chunk_ranking(side: Side, hits: Sequence[ChunkHit], score: Callable[[ChunkHit], float | None]) -> Ranked:
    """Hits as ``((document key, chunk offset), score)``, best first."""
    docs = side.core.store.documents_by_pk(list({h.document_pk for h in hits}), with_text=False)
    out: Ranked = []
    for h in hits:
        value = score(h)
        assert value is not None, h
        out.append(((side.key(docs[h.document_pk]), h.offset), value))
    return out


def both(pair: Pair, fn: Callable[[Side], object], what: str) -> object:
    """Run ``fn`` on both sides; their outcomes (result or domain error) must be equal."""
    a, b = (outcome(partial(fn, side)) for side in pair)
    assert a == b, f"{what}\n sqlite:   {a}\n postgres: {b}"
    return a


def words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


SCORES: dict[SearchMode, Callable[[ChunkHit], float | None]] = {
    SearchMode.KEYWORD: lambda h: h.keyword_score,
    SearchMode.VECTOR: lambda h: h.vector_score,
    SearchMode.HYBRID: lambda h: h.score,
}
TOLERANCE = {SearchMode.KEYWORD: BM25, SearchMode.VECTOR: COSINE, SearchMode.HYBRID: FUSED}


class SqliteMissedChunks(AssertionError):
    """The SQLite store's HNSW (usearch) search left out live chunks although ``k`` covers them all."""


class PostgresMissedChunks(AssertionError):
    """The PostgreSQL store's HNSW (pgvector) search left out live chunks although ``k`` covers them all."""


MISSED = {"sqlite": SqliteMissedChunks, "postgres": PostgresMissedChunks}


def check_recall(side: Side, query: str, hits: list[ChunkHit], k: int) -> None:
    """An unfiltered vector search whose ``k`` covers every chunk must return every chunk (each has a score)."""
    docs = side.core.store.list_documents(side.ds, None, 10_000, 0)[0]
    chunks = side.core.store.chunks_of_documents([d.pk for d in docs])
    if k >= len(chunks) > len(hits):
        missed = sorted({c.pk for c in chunks} - {h.chunk_pk for h in hits})
        raise MISSED[side.name](f"{side.name}: vector search {query!r} k={k}: {len(hits)} of {len(chunks)} chunks, "
                                f"missed chunk pks {missed}")  # fmt: skip


def compare_search(pair: Pair, query: str, mode: SearchMode, filters: FilterSet, k: int) -> None:
    what = f"{mode.value} search {query!r} k={k} {filters}"
    hits = [s.core.search.rank_chunks(s.ds, query, mode, filters, k) for s in pair]
    if mode is SearchMode.VECTOR and filters.is_empty():
        for side, side_hits in zip(pair, hits, strict=True):
            check_recall(side, query, side_hits, k)
    ranked: list[Ranked] = [chunk_ranking(s, h, SCORES[mode]) for s, h in zip(pair, hits, strict=True)]
    assert_same_ranking(what, ranked[0], ranked[1], k, **TOLERANCE[mode])
    # every signal's score and the chunk itself, for the chunks both returned
    details = []
    for side_hits, side_ranked in zip(hits, ranked, strict=True):
        details.append({key: h for (key, _), h in zip(side_ranked, side_hits, strict=True)})
    for key in details[0].keys() & details[1].keys():
        a, b = details[0][key], details[1][key]
        assert (a.text, a.hash) == (b.text, b.hash), what
        for got, want, tol in ((a.keyword_score, b.keyword_score, BM25), (a.vector_score, b.vector_score, COSINE)):
            assert (got is None) == (want is None), (what, key, a, b)
            assert got is None or want is None or close(got, want, **tol), (what, key, a, b)


def latest(side: Side, filters: FilterSet, k: int) -> list[tuple[str, list[int]]]:
    """An empty-query search: the latest documents (timestamp, then newest first) with their first chunks."""
    found = side.core.search.search(side.ds, SearchRequest("", k, filters=filters))
    return [(side.key(h.document), [c.offset for c in h.chunks]) for h in found]
