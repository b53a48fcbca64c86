"""Keyword-only retrieval quality on BEIR-layout sets: each set ingested into a fresh data source (chunked with the
bundled MiniLM tokenizer, as ``alexandria eval`` chunks, but with a constant vector instead of embeddings, so no
model runs) and every judged query sent through keyword search; nDCG@10, Recall@10, Recall@100, MRR per set.

    .venv/bin/python bench/keyword_eval.py ../shared/data/scifact ../shared/data/xquadr-zh ...
        [--database-url postgresql://...] [--max-queries N] [--out FILE]

The numbers are those of ``alexandria eval``'s keyword mode (the same ingest, the same ranking of documents by
their best chunk), on the embedded store by default or on PostgreSQL with ``--database-url``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from alexandria.config import Settings
from alexandria.domain.models import SearchMode
from alexandria.evaluation import BeirSet, ingest_corpus, load_beir, metrics, rank_documents
from alexandria.evaluation_analyzers import keyword_only_embedder
from alexandria.services.core import Core


def sampled(data: BeirSet, max_queries: int | None) -> BeirSet:
    if not max_queries or len(data.qrels) <= max_queries:
        return data
    keep = sorted(random.Random(0).sample(sorted(data.qrels), max_queries))
    return BeirSet(data.corpus, data.queries, {q: data.qrels[q] for q in keep})


def evaluate_set(directory: Path, database_url: str | None, max_queries: int | None) -> dict[str, object]:
    data = sampled(load_beir(directory), max_queries)
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="kw-eval-")), database_url=database_url)
    core = Core(settings)
    try:
        constant = keyword_only_embedder(core, core.embedders.default_name())  # the model's chunks, no embedding
        ws, _ = core.catalog.ensure_workspace("eval")
        name = f"kw-{directory.resolve().name}-{int(time.time() * 1000)}"
        ds = core.catalog.create_data_source(ws, name, embedder=constant)
        t0 = time.perf_counter()
        ingest_corpus(core, ds, data, 1)
        ingest_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        runs = {qid: rank_documents(core, ds, data.queries[qid], SearchMode.KEYWORD) for qid in data.qrels}
        query_s = time.perf_counter() - t0
        return {
            "set": directory.resolve().name,
            "queries": len(data.qrels),
            **metrics(runs, data.qrels),
            "ingest_s": round(ingest_s, 1),
            "query_ms": round(1000 * query_s / max(len(runs), 1), 2),
        }
    finally:
        core.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", type=Path)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for directory in args.sets:
        result = evaluate_set(directory, args.database_url, args.max_queries)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print(file=sys.stderr)


if __name__ == "__main__":
    main()
