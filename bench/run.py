"""Alexandria benchmarks, one command: ``.venv/bin/python bench/run.py [--data ../shared/data/scifact]``.

1. Ingestion: the raw embedder on N passages next to the whole pipeline (chunk, hash, embed, SQLite + tantivy + HNSW)
   on the same passages, as passages/s and the pipeline's overhead ratio.
2. Quality: ``alexandria eval`` on the BEIR set (keyword, vector, hybrid; plus RRF and alpha variants of hybrid).
3. Latency: p50/p95 of the Dust search endpoint over real HTTP (a real ``alexandria serve`` process) for every judged
   query, per mode, next to the in-process core latency for the same queries.

Results are printed and written to ``bench/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from alexandria import evaluation
from alexandria.config import Settings
from alexandria.domain.filters import FilterSet
from alexandria.domain.models import Role, SearchMode
from alexandria.ingest.chunkers import Section
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest

ROOT = Path(__file__).resolve().parent
MODES = [SearchMode.KEYWORD, SearchMode.VECTOR, SearchMode.HYBRID]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def bench_ingest(data: evaluation.BeirSet, n: int, workdir: Path) -> dict[str, Any]:
    core = Core(Settings(data_dir=workdir / "ingest"))
    try:
        ws, _ = core.catalog.ensure_workspace("bench")
        ds = core.catalog.create_data_source(ws, "ingest")
        embedder = core.embedders.get(ds.embedder)
        docs = data.corpus[:n]
        embedder.embed(["warm up the model"] * 8)
        reqs = [
            UpsertRequest(doc_id, Section(title + "\n" if title else None, text, ()), title=title or None)
            for doc_id, title, text in docs
        ]
        t0 = time.perf_counter()
        for start in range(0, len(reqs), 256):
            core.documents.upsert_many(ds, reqs[start : start + 256], 1)
        pipeline_s = time.perf_counter() - t0
        stored = core.store.list_documents(ds, None, n, 0)[0]
        chunk_texts = [c.text for c in core.store.chunks_of_documents([d.pk for d in stored])]
        # the raw embedder on exactly the texts the pipeline embedded (its chunks), with the same batch size
        t0 = time.perf_counter()
        for start in range(0, len(chunk_texts), 256):
            embedder.embed(chunk_texts[start : start + 256])
        raw_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for start in range(0, len(reqs), 256):  # identical content again: hash check only
            core.documents.upsert_many(ds, reqs[start : start + 256], 1)
        noop_s = time.perf_counter() - t0
        chunks = len(chunk_texts)
    finally:
        core.close()
    return {
        "passages": n,
        "chunks": chunks,
        "embedder_passages_per_s": round(n / raw_s, 1),
        "pipeline_passages_per_s": round(n / pipeline_s, 1),
        "pipeline_overhead": round(pipeline_s / raw_s - 1, 3),
        "reupsert_identical_passages_per_s": round(n / noop_s, 1),
    }


def bench_quality(core: Core, data: evaluation.BeirSet) -> dict[str, Any]:
    ws, _ = core.catalog.ensure_workspace("eval")
    ds = core.store.get_data_source(ws.id, "scifact") or core.catalog.create_data_source(ws, "scifact")
    t0 = time.perf_counter()
    done = [0]

    def progress(k: int) -> None:
        done[0] += k
        if done[0] % 1024 < k:
            log(f"  embedded {done[0]} chunks ({time.perf_counter() - t0:.0f}s)")

    evaluation.ingest_corpus(core, ds, data, 1, on_embedded=progress)
    log(f"  corpus ready in {time.perf_counter() - t0:.0f}s")
    out: dict[str, Any] = evaluation.evaluate(core, ds, data, MODES)
    base = core.settings
    variants: dict[str, Any] = {}
    for label, update in [
        ("rrf", {"fusion": "rrf"}),
        *[(f"convex_alpha_{a}", {"fusion": "convex", "hybrid_alpha": a}) for a in (0.3, 0.4, 0.5, 0.6, 0.7)],
    ]:
        core.search.settings = base.model_copy(update=update)
        variants[label] = evaluation.evaluate(core, ds, data, [SearchMode.HYBRID])["hybrid"]["ndcg@10"]
    core.search.settings = base
    out["hybrid_variants_ndcg@10"] = variants
    return out


def bench_latency(core: Core, data: evaluation.BeirSet, workdir: Path) -> dict[str, Any]:
    ws = core.catalog.workspace("eval")
    ds = core.catalog.data_source(ws, "scifact")
    space = core.store.ensure_global_space(ws)
    _, key = core.keys.create(ws, Role.BUILDER)
    queries = [data.queries[q] for q in data.qrels]
    inproc: dict[str, list[float]] = {}
    for mode in MODES:
        times = []
        for q in queries:
            t0 = time.perf_counter()
            core.search.rank_chunks(ds, q, mode, FilterSet(), 10)
            times.append((time.perf_counter() - t0) * 1000)
        inproc[mode.value] = times
    core.store.vectors.save_all()  # type: ignore[attr-defined]
    port = 8765
    env = {**os.environ}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexandria.cli", "serve", "--data-dir", str(core.settings.data_dir), "--port",
         str(port), "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    out: dict[str, Any] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        path = f"/api/v1/w/{ws.sid}/spaces/{space.sid}/data_sources/{ds.sid}/search"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            for mode in MODES:
                http.get(path, params={"query": "warm up", "top_k": 10, "search_mode": mode.value})
                times = []
                for q in queries:
                    t0 = time.perf_counter()
                    resp = http.get(path, params={"query": q, "top_k": 10, "search_mode": mode.value})
                    times.append((time.perf_counter() - t0) * 1000)
                    resp.raise_for_status()
                out[mode.value] = {
                    "http_p50_ms": round(statistics.median(times), 2),
                    "http_p95_ms": round(pct(times, 95), 2),
                    "core_p50_ms": round(statistics.median(inproc[mode.value]), 2),
                    "core_p95_ms": round(pct(inproc[mode.value], 95), 2),
                }
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data" / "scifact")
    parser.add_argument("--ingest-passages", type=int, default=1000)
    parser.add_argument("--data-dir", type=Path, default=None, help="Keep the evaluation store here (reused).")
    parser.add_argument("--skip", nargs="*", default=[], choices=["ingest", "quality", "latency"])
    args = parser.parse_args()
    data = evaluation.load_beir(args.data)
    results: dict[str, Any] = {"dataset": args.data.name, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "ingest" not in args.skip:
            log(f"== ingestion throughput ({args.ingest_passages} passages)")
            results["ingest"] = bench_ingest(data, args.ingest_passages, work)
            log(json.dumps(results["ingest"]))
        core = Core(Settings(data_dir=args.data_dir or work / "eval"))
        try:
            if "quality" not in args.skip:
                log("== retrieval quality")
                results["quality"] = bench_quality(core, data)
                log(json.dumps(results["quality"]))
            if "latency" not in args.skip:
                log("== search latency over HTTP")
                results["latency"] = bench_latency(core, data, work)
                log(json.dumps(results["latency"]))
        finally:
            core.close()
    out_dir = ROOT / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"{args.data.name}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
