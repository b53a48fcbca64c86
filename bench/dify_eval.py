"""Retrieval quality through Dify's path: a BEIR set ingested with Dify's create-by-text (Dify's automatic
processing rule: 500-character segments, 50 overlap) on the real model, then each judged query sent to
``POST /v1/datasets/{id}/retrieve`` for every search method; nDCG@10, Recall@10, Recall@100, MRR per method.

    .venv/bin/python bench/dify_eval.py [--data DIR] [--limit-docs N] [--out FILE]

The retrieve calls go through the real HTTP route (in process, ASGI), so the numbers include Dify's request
handling, the segment grouping and the [0,1] score normalisation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from alexandria.api.app import create_asgi
from alexandria.config import Settings
from alexandria.domain.models import Role
from alexandria.evaluation import load_beir, metrics
from alexandria.services.core import Core
from alexandria.services.dify import DocumentOptions

METHODS = ("semantic_search", "full_text_search", "keyword_search", "hybrid_search")
ROOT = Path(__file__).resolve().parent.parent


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data = load_beir(Path(args.data))
    corpus = data.corpus[: args.limit_docs] if args.limit_docs else data.corpus
    kept = {d for d, _, _ in corpus}
    qrels = {q: {d: g for d, g in rel.items() if d in kept} for q, rel in data.qrels.items()}
    qrels = {q: rel for q, rel in qrels.items() if any(g > 0 for g in rel.values())}
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="dify-eval-")), max_body_mb=64)
    core = Core(settings)
    ws, _ = core.catalog.ensure_workspace("eval")
    _, key = core.keys.create(ws, Role.BUILDER)
    headers = {"Authorization": f"Bearer {key}"}
    out: dict[str, Any] = {"data": args.data, "documents": len(corpus), "queries": len(qrels)}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_asgi(settings, core)), base_url="http://bench", timeout=600
    ) as client:
        resp = await client.post("/v1/datasets", json={"name": "eval", "indexing_technique": "high_quality"},
                                 headers=headers)  # fmt: skip
        resp.raise_for_status()
        ds = core.dify.dataset(ws, resp.json()["id"])
        started = time.perf_counter()
        opts = DocumentOptions(indexing_technique="high_quality")
        with progress() as bar:
            task = bar.add_task("create-by-text", total=len(corpus))
            for doc_id, title, text in corpus:
                ds, _, _ = core.dify.create_by_text(ds, doc_id, f"{title}\n{text}" if title else text, opts)
                bar.advance(task)
            pool = core.jobs.pool(0)
            task = bar.add_task("index (queue)", total=len(corpus))
            while True:
                done = pool.run_once(pool.owner("bench"))
                if done == 0:
                    break
                bar.advance(task, done)
        out["ingest_s"] = round(time.perf_counter() - started, 1)
        _, total = core.store.list_dify_documents(ds, None, None, 1, 0)
        out["indexed_documents"] = total
        out["segments"] = sum(d.chunk_count for d in core.store.list_dify_documents(ds, None, None, total, 0)[0])
        for method in METHODS:
            runs: dict[str, list[str]] = {}
            latencies: list[float] = []
            with progress() as bar:
                task = bar.add_task(method, total=len(qrels))
                for qid in qrels:
                    body = {
                        "query": data.queries[qid][:250],
                        "retrieval_model": {
                            "search_method": method,
                            "reranking_enable": False,
                            "top_k": 100,
                            "score_threshold_enabled": False,
                        },
                    }
                    t0 = time.perf_counter()
                    resp = await client.post(f"/v1/datasets/{ds.uuid}/retrieve", json=body, headers=headers)
                    latencies.append(time.perf_counter() - t0)
                    resp.raise_for_status()
                    ranked: list[str] = []
                    for record in resp.json()["records"]:
                        name = record["segment"]["document"]["name"]
                        if name not in ranked:
                            ranked.append(name)
                    runs[qid] = ranked
                    bar.advance(task)
            latencies.sort()
            out[method] = metrics(runs, qrels) | {
                "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
                "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 1),
            }
    core.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--limit-docs", type=int, default=0, help="Use only the first N corpus documents.")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "dify_eval.json"))
    args = parser.parse_args()
    result = asyncio.run(run(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
