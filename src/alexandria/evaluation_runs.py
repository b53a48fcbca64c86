"""Comparing retrieval settings on BEIR-layout sets: which sets, which variants (modes × fusions × embedders), the
cached corpus per (set, embedder), one pass over the queries per embedder, and per-query diagnostics.

Every variant of one embedder ranks the SAME candidates (:meth:`SearchService.candidates`: each signal's top chunks,
every one with both scores), so keyword, vector and each hybrid fusion are compared on equal terms and the query
costs one embedding and one search per signal whatever the number of fusions compared. Keyword and vector rank
their top 300 chunks (for Recall@100 over documents); hybrid fuses each signal's top ``hybrid_candidates`` (100),
exactly what the server fuses for a top-10 search.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexandria import evaluation_analyzers as by_analyzer
from alexandria.domain.filters import FilterSet
from alexandria.domain.models import DataSource
from alexandria.errors import InvalidRequest
from alexandria.evaluation import CHUNKS_PER_QUERY, DOCS_PER_QUERY, BeirSet, ingest_corpus, load_beir, metrics, ndcg_at
from alexandria.search import fusion
from alexandria.services.core import Core

MODES = ("keyword", "vector", "hybrid")
TIE = 1e-9  # nDCG differences below this are ties in the diagnostics


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/alexandria/eval`` (default ``~/.cache/alexandria/eval``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "alexandria" / "eval"


def find_sets(paths: Iterable[Path]) -> list[Path]:
    """BEIR set folders: each path that holds ``corpus.jsonl`` itself, else its sub-folders that do (sorted)."""
    out: list[Path] = []
    for p in paths:
        if (p / "corpus.jsonl").exists():
            out.append(p)
            continue
        found = sorted(d for d in p.iterdir() if d.is_dir() and (d / "corpus.jsonl").exists())
        if not found:
            raise InvalidRequest(
                f"no BEIR data set in {p} (a set is a folder with corpus.jsonl, queries.jsonl, qrels/)"
            )
        out.extend(found)
    return out


def sample_queries(data: BeirSet, max_queries: int | None, seed: int) -> list[str]:
    """The judged query ids, all or a seeded random sample of ``max_queries`` (in id order)."""
    qids = sorted(data.qrels)
    if max_queries is None or max_queries >= len(qids):
        return qids
    return sorted(random.Random(seed).sample(qids, max_queries))


def parse_fusion(text: str) -> fusion.FusionSpec:
    """``METHOD`` or ``METHOD:ALPHA`` (ALPHA: the vector weight; for ``confidence`` fixed calibrated weights)."""
    method, _, alpha = text.partition(":")
    if method not in fusion.FUSION_METHODS:
        raise InvalidRequest(f"unknown fusion {method!r}; one of {', '.join(fusion.FUSION_METHODS)}")
    if method == "rrf" and alpha:
        raise InvalidRequest("rrf takes no weight")
    try:
        value = float(alpha) if alpha else None
    except ValueError as exc:
        raise InvalidRequest(f"fusion weight must be a number: {text!r}") from exc
    if value is not None and not 0.0 <= value <= 1.0:
        raise InvalidRequest(f"fusion weight must be in [0, 1]: {text!r}")
    return fusion.FusionSpec(method, value)


@dataclass(frozen=True)
class Variant:
    """One ranking compared: a mode, for hybrid a fusion, and the embedder of the data source it runs on."""

    mode: str
    embedder: str
    spec: fusion.FusionSpec | None = None

    def label(self, show_embedder: bool) -> str:
        name = self.mode if self.spec is None else f"hybrid:{self.spec.label}"
        return f"{name} [{self.embedder}]" if show_embedder and self.mode != "keyword" else name


def variants(modes: Sequence[str], specs: Sequence[fusion.FusionSpec], embedders: Sequence[str]) -> list[Variant]:
    """Keyword once (it does not depend on the embedder), vector and each hybrid fusion per embedder."""
    out: list[Variant] = []
    if "keyword" in modes:
        out.append(Variant("keyword", embedders[0]))
    for emb in embedders:
        if "vector" in modes:
            out.append(Variant("vector", emb))
        if "hybrid" in modes:
            out.extend(Variant("hybrid", emb, s) for s in specs)
    return out


@dataclass
class SetResult:
    name: str
    documents: int
    queries: list[str]
    texts: dict[str, str]
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> qid -> nDCG@10
    table: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> metrics


def corpus_fingerprint(directory: Path) -> str:
    """The corpus file's content hash, so a cached ingest is never stale and survives a copy of the set (a fresh
    checkout, another machine) that changes only file times."""
    digest = hashlib.sha1(usedforsecurity=False)
    with (directory / "corpus.jsonl").open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


def cached_data_source(
    core: Core,
    directory: Path,
    data: BeirSet,
    embedder: str,
    cache_dir: Path,
    on_documents: Callable[[int], None] | None = None,
) -> DataSource:
    """The data source holding the set's corpus embedded by ``embedder``, ingested once per (corpus, embedder):
    later runs find it complete (a marker written after the ingest) and embed nothing."""
    ws, _ = core.catalog.ensure_workspace("eval")
    name = f"{directory.name}-{corpus_fingerprint(directory)}-{embedder}".replace("/", "-")
    marker = cache_dir / "ingested" / f"{name}.json"
    ds = core.catalog.find_data_source(ws, name)
    if ds is not None and marker.exists():
        if on_documents is not None:
            on_documents(len(data.corpus))
        return ds
    if ds is None:
        ds = core.catalog.create_data_source(ws, name, embedder=embedder)
    stored = ingest_corpus(core, ds, data, 1, on_documents=on_documents, batch=64)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"set": str(directory.resolve()), "embedder": embedder, "documents": stored}))
    return ds


class _DocIds:
    """Chunk id -> document id, loaded on demand and kept (a document scores as its best chunk)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.known: dict[int, str] = {}

    def rank(self, chunk_pks: Sequence[int]) -> list[str]:
        missing = [pk for pk in chunk_pks if pk not in self.known]
        if missing:
            chunks = self.core.search.store.load_chunks(missing)
            docs = self.core.search.documents_by_pk(sorted({c.document_pk for c in chunks.values()}))
            for pk, c in chunks.items():
                if c.document_pk in docs:
                    self.known[pk] = docs[c.document_pk].document_id
        ranked: list[str] = []
        seen: set[str] = set()
        for pk in chunk_pks:
            doc = self.known.get(pk)
            if doc is not None and doc not in seen:
                seen.add(doc)
                ranked.append(doc)
                if len(ranked) >= DOCS_PER_QUERY:
                    break
        return ranked


def run_queries(
    core: Core,
    ds: DataSource,
    data: BeirSet,
    qids: Sequence[str],
    chosen: Sequence[Variant],
    show_embedder: bool,
    on_query: Callable[[], None] | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Each variant's ranked document ids per query (variants of ``ds``'s embedder; keyword included if chosen)."""
    runs: dict[str, dict[str, list[str]]] = {v.label(show_embedder): {} for v in chosen}
    docs = _DocIds(core)
    for qid in qids:
        cands = core.search.candidates(ds, data.queries[qid], FilterSet(), CHUNKS_PER_QUERY)
        # hybrid exactly as the server ranks a top-10: over each signal's top ``hybrid_candidates``
        hybrid = cands.top(core.search.hybrid_depth(10))
        for v in chosen:
            if v.mode == "keyword":
                order = list(cands.keyword_ranked)
            elif v.mode == "vector":
                order = list(cands.vector_ranked)
            else:
                order = [s.pk for s in core.search.fused_order(hybrid, CHUNKS_PER_QUERY, v.spec)]
            runs[v.label(show_embedder)][qid] = docs.rank(order)
        if on_query is not None:
            on_query()
    return runs


def score_runs(result: SetResult, runs: dict[str, dict[str, list[str]]], qrels: dict[str, dict[str, int]]) -> None:
    judged = {q: qrels[q] for q in result.queries}
    for label, run in runs.items():
        result.table[label] = metrics(run, judged)
        result.per_query[label] = {q: round(ndcg_at(run.get(q, []), judged[q], 10), 4) for q in result.queries}


def diagnostics(result: SetResult) -> dict[str, Any]:
    """Per query: each variant's nDCG@10, which variants win (best) and lose (worst); per variant: how many queries
    it wins, loses, and beats / trails each other variant on."""
    labels = list(result.per_query)
    queries: dict[str, Any] = {}
    summary: dict[str, dict[str, Any]] = {
        a: {"best": 0, "worst": 0, "better_than": dict.fromkeys((b for b in labels if b != a), 0)} for a in labels
    }
    for q in result.queries:
        scores = {lab: result.per_query[lab][q] for lab in labels}
        hi, lo = max(scores.values()), min(scores.values())
        spread = hi - lo > TIE
        wins = [lab for lab, s in scores.items() if spread and s >= hi - TIE]
        losses = [lab for lab, s in scores.items() if spread and s <= lo + TIE]
        queries[q] = {"text": result.texts[q], "ndcg@10": scores, "best": wins, "worst": losses}
        for a in labels:
            summary[a]["best"] += a in wins
            summary[a]["worst"] += a in losses
            for b in labels:
                if b != a and scores[a] > scores[b] + TIE:
                    summary[a]["better_than"][b] += 1
    return {"documents": result.documents, "summary": summary, "queries": queries}


def evaluate_set(
    core: Core,
    directory: Path,
    modes: Sequence[str],
    specs: Sequence[fusion.FusionSpec],
    embedders: Sequence[str],
    cache_dir: Path,
    max_queries: int | None = None,
    seed: int = 0,
    on_documents: Callable[[str, int, int], None] | None = None,
    on_query: Callable[[str, int], None] | None = None,
    analyzers: Sequence[str] = (),
) -> SetResult:
    """Every variant on one set, then keyword search under each of ``analyzers`` (``evaluation_analyzers.py``: in
    memory; with no ``modes`` nothing is ingested at all). Keyword mode alone embeds nothing (a constant vector).
    ``on_documents(label, done, total)`` reports the corpus ingest (embedding) of each embedder; ``on_query(label,
    total)`` each query run."""
    data = load_beir(directory)
    qids = sample_queries(data, max_queries, seed)
    result = SetResult(directory.name, len(data.corpus), qids, {q: data.queries[q] for q in qids})
    chosen = variants(modes, specs, embedders)
    show = len(embedders) > 1
    runs: dict[str, dict[str, list[str]]] = {}
    keyword_only = set(modes) <= {"keyword"}
    for i, emb in enumerate(embedders):
        mine = [v for v in chosen if v.embedder == emb and (v.mode != "keyword" or i == 0)]
        if not mine:
            continue
        label = f"{directory.name} [{emb}]"
        done = [0]

        def docs_done(n: int, label: str = label, done: list[int] = done) -> None:
            done[0] += n
            if on_documents is not None:
                on_documents(label, done[0], len(data.corpus))

        stored_by = by_analyzer.keyword_only_embedder(core, emb) if keyword_only else emb
        ds = cached_data_source(core, directory, data, stored_by, cache_dir, docs_done)

        def query_done(label: str = label) -> None:
            if on_query is not None:
                on_query(label, len(qids))

        runs.update(run_queries(core, ds, data, qids, mine, show, query_done))
    if analyzers:
        chunks = by_analyzer.corpus_chunks(core, data, embedders[0])

        def analyzer_query_done(label: str) -> None:
            if on_query is not None:
                on_query(f"{directory.name} {label}", len(qids))

        runs.update(by_analyzer.analyzer_runs(chunks, data, qids, analyzers, analyzer_query_done))
    score_runs(result, runs, data.qrels)
    return result
