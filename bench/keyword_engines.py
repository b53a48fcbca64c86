"""Keyword engines side by side: SQLite FTS5 against tantivy (block-max WAND), BM25 top-10 latency as the corpus grows,
and SciFact nDCG@10 for both. This is the measurement behind the embedded store's choice of tantivy.

Run: ``.venv/bin/python bench/keyword_engines.py [--chunks 100000] [--chunks 1000000] [--queries 200]``

Both engines index the same terms: the store's analyzer (``search/analysis.py``) joined by spaces, FTS5 with its
``unicode61`` tokenizer over them, tantivy with a whitespace tokenizer; queries are the analyzer's query terms OR-ed.
Chunks are 120-180 consecutive words of real English text (SciFact, Cranfield, COVID-QA from ``../shared/data``)
started at random words. Prints load time, disk and p50/p95/p99 per engine and size, and the load average: the
machine may be shared, so compare the two engines within one size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import tantivy

from alexandria.search.analysis import document_terms, query_terms
from bench.scale import default_data


class Fts5:
    def __init__(self, path: Path) -> None:
        self.path = path / "fts.db"
        self.db = sqlite3.connect(self.path)
        self.db.execute("CREATE VIRTUAL TABLE f USING fts5(terms, tokenize='unicode61')")

    def add(self, rows: Iterable[tuple[int, str]]) -> None:
        batch: list[tuple[int, str]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == 50_000:
                self.db.executemany("INSERT INTO f (rowid, terms) VALUES (?, ?)", batch)
                batch = []
        self.db.executemany("INSERT INTO f (rowid, terms) VALUES (?, ?)", batch)
        self.db.commit()

    def search(self, terms: Sequence[str], k: int) -> list[int]:
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        return [
            int(r[0]) for r in self.db.execute("SELECT rowid FROM f WHERE f MATCH ? ORDER BY rank LIMIT ?", (match, k))
        ]


class Tantivy:
    def __init__(self, path: Path) -> None:
        builder = tantivy.SchemaBuilder()
        builder.add_unsigned_field("id", stored=False, indexed=True, fast=True)
        builder.add_text_field("terms", stored=False, tokenizer_name="ws", index_option="freq")
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema, path=str(path))
        self.index.register_tokenizer("ws", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())

    def add(self, rows: Iterable[tuple[int, str]]) -> None:
        writer = self.index.writer(heap_size=256_000_000, num_threads=2)
        for pk, text in rows:
            doc = tantivy.Document()
            doc.add_unsigned("id", pk)
            doc.add_text("terms", text)
            writer.add_document(doc)
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.searcher = self.index.searcher()

    def search(self, terms: Sequence[str], k: int) -> list[int]:
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(self.schema, "terms", t)) for t in terms]
        )
        hits = self.searcher.search(query, k).hits
        return [int(v or 0) for v in self.searcher.fast_field_values("id", [address for _, address in hits])]


ENGINES = {"fts5": Fts5, "tantivy": Tantivy}


def _disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _pct(ms: list[float], q: float) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def quality(data: Path, scratch: Path) -> None:
    corpus = [json.loads(line) for line in (data / "scifact" / "corpus.jsonl").open()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (data / "scifact" / "queries.jsonl").open())}
    qrels: dict[str, dict[str, int]] = {}
    for line in list((data / "scifact" / "qrels" / "test.tsv").open())[1:]:
        qid, did, score = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    rows = [(i, " ".join(document_terms(f"{d.get('title', '')} {d['text']}"))) for i, d in enumerate(corpus)]
    for name, engine_class in ENGINES.items():
        (scratch / f"q-{name}").mkdir()
        engine = engine_class(scratch / f"q-{name}")
        engine.add(rows)
        scores = []
        for qid, rel in qrels.items():
            ranked = [corpus[i]["_id"] for i in engine.search(query_terms(queries[qid]), 10)]
            dcg = sum(rel.get(d, 0) / math.log2(r + 2) for r, d in enumerate(ranked))
            ideal = sum(g / math.log2(r + 2) for r, g in enumerate(sorted(rel.values(), reverse=True)[:10]))
            scores.append(dcg / ideal)
        print(f"SciFact keyword nDCG@10, {name}: {statistics.mean(scores):.4f}", flush=True)


def speed(data: Path, scratch: Path, n: int, queries: list[str]) -> None:
    words: list[str] = []
    for name in ("scifact", "cranfield", "covidqa-chunk"):
        for line in (data / name / "corpus.jsonl").open():
            doc = json.loads(line)
            words.extend(f"{doc.get('title', '')} {doc['text']}".split())
    analysed = [query_terms(q) for q in queries]
    for name, engine_class in ENGINES.items():
        rng = random.Random(1)  # the same chunks for both engines

        def rows(rng: random.Random = rng) -> Iterable[tuple[int, str]]:
            for pk in range(n):
                length = rng.randint(120, 180)
                at = rng.randrange(len(words) - length)
                yield pk, " ".join(document_terms(" ".join(words[at : at + length])))

        path = scratch / f"{name}-{n}"
        path.mkdir()
        engine = engine_class(path)
        started = time.perf_counter()
        engine.add(rows())
        load_s = time.perf_counter() - started
        for terms in analysed[:20]:
            engine.search(terms, 10)
        ms = []
        for terms in analysed:
            t0 = time.perf_counter()
            engine.search(terms, 10)
            ms.append((time.perf_counter() - t0) * 1000)
        print(
            f"{n:>9,} chunks  {name:8s} load {load_s:7.1f} s (analysis included)  disk {_disk(path) / 1e6:6.0f} MB  "
            f"top-10 p50 {statistics.median(ms):8.2f} ms  p95 {_pct(ms, 0.95):8.2f}  p99 {_pct(ms, 0.99):8.2f}  "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        shutil.rmtree(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, action="append", help="corpus sizes (repeatable; default 100,000)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-quality", action="store_true", help="skip the SciFact nDCG@10 comparison")
    args = ap.parse_args()
    data = default_data()
    queries = [json.loads(line)["text"] for line in (data / "scifact" / "queries.jsonl").open()][: args.queries]
    scratch = Path(tempfile.mkdtemp(prefix="alexandria-kw-"))
    try:
        if not args.no_quality:
            quality(data, scratch)
        for n in args.chunks or [100_000]:
            speed(data, scratch, n, queries)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
