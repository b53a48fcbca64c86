"""Retrieval evaluation on BEIR-layout data sets: nDCG@10, Recall@10, Recall@100, MRR per search mode."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from alexandria.domain.filters import FilterSet
from alexandria.domain.models import DataSource, SearchMode
from alexandria.errors import AlexandriaError, InvalidRequest
from alexandria.ingest.chunkers import Section
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest

CHUNKS_PER_QUERY = 300
DOCS_PER_QUERY = 100


@dataclass(frozen=True)
class BeirSet:
    corpus: list[tuple[str, str, str]]  # (id, title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_beir(directory: Path, split: str = "test") -> BeirSet:
    corpus_path, queries_path = directory / "corpus.jsonl", directory / "queries.jsonl"
    qrels_path = directory / "qrels" / f"{split}.tsv"
    for p in (corpus_path, queries_path, qrels_path):
        if not p.exists():
            raise InvalidRequest(f"not a BEIR data set: {p} is missing")
    corpus = []
    for line in _lines(corpus_path):
        obj = json.loads(line)
        corpus.append((str(obj["_id"]), str(obj.get("title") or ""), str(obj.get("text") or "")))
    queries = {str(o["_id"]): str(o["text"]) for o in (json.loads(line) for line in _lines(queries_path))}
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            parts = line.rstrip("\n").split("\t")
            if i == 0 and not parts[-1].lstrip("-").isdigit():
                continue  # header
            if len(parts) >= 3:
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    qrels = {q: rel for q, rel in qrels.items() if q in queries}
    return BeirSet(corpus, queries, qrels)


def _lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line


def ndcg_at(ranked: list[str], rel: dict[str, int], k: int) -> float:
    dcg = sum((2 ** rel.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in rel.values() if g > 0), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: list[str], rel: dict[str, int], k: int) -> float:
    relevant = {d for d, g in rel.items() if g > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr(ranked: list[str], rel: dict[str, int]) -> float:
    for i, d in enumerate(ranked):
        if rel.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def metrics(runs: dict[str, list[str]], qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    n = max(len(qrels), 1)
    return {
        "ndcg@10": round(sum(ndcg_at(runs.get(q, []), r, 10) for q, r in qrels.items()) / n, 4),
        "recall@10": round(sum(recall_at(runs.get(q, []), r, 10) for q, r in qrels.items()) / n, 4),
        "recall@100": round(sum(recall_at(runs.get(q, []), r, 100) for q, r in qrels.items()) / n, 4),
        "mrr": round(sum(mrr(runs.get(q, []), r) for q, r in qrels.items()) / n, 4),
    }


def corpus_section(title: str, text: str) -> Section:
    """A corpus document as it is stored: its title a section prefix (so in every chunk) over its text."""
    return Section(title + "\n" if title else None, text, ())


def ingest_corpus(
    core: Core,
    ds: DataSource,
    data: BeirSet,
    now_ms: int,
    on_embedded: Callable[[int], None] | None = None,
    batch: int = 256,
    on_documents: Callable[[int], None] | None = None,
) -> int:
    """Upsert the corpus (title as a section prefix over the text); returns the number of documents stored.
    ``on_embedded(n)`` reports chunks embedded, ``on_documents(n)`` documents stored (after each batch)."""
    stored = 0
    for start in range(0, len(data.corpus), batch):
        reqs = [
            UpsertRequest(
                document_id=doc_id,
                section=corpus_section(title, text),
                title=title or None,
                timestamp=now_ms,
            )
            for doc_id, title, text in data.corpus[start : start + batch]
        ]
        for result in core.documents.upsert_many(ds, reqs, now_ms, on_embedded=on_embedded):
            if isinstance(result, AlexandriaError):
                raise result
            stored += 1
        if on_documents is not None:
            on_documents(len(reqs))
    return stored


def rank_documents(core: Core, ds: DataSource, query: str, mode: SearchMode) -> list[str]:
    """Document ids best first (a document scores as its best chunk)."""
    hits = core.search.rank_chunks(ds, query, mode, FilterSet(), CHUNKS_PER_QUERY)
    docs = core.search.documents_by_pk(sorted({h.document_pk for h in hits}))
    ranked: list[str] = []
    for h in hits:
        doc_id = docs[h.document_pk].document_id if h.document_pk in docs else None
        if doc_id is not None and doc_id not in ranked:
            ranked.append(doc_id)
    return ranked[:DOCS_PER_QUERY]


def evaluate(
    core: Core, ds: DataSource, data: BeirSet, modes: list[SearchMode], on_query: Callable[[], None] | None = None
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for mode in modes:
        runs: dict[str, list[str]] = {}
        for qid in data.qrels:
            runs[qid] = rank_documents(core, ds, data.queries[qid], mode)
            if on_query is not None:
                on_query()
        out[mode.value] = metrics(runs, data.qrels)
    return out
