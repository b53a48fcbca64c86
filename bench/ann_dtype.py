"""HNSW vectors kept in reduced precision (f32 / f16 / i8), every result rescored exactly: recall, latency, memory.

    .venv/bin/python bench/ann_dtype.py --chunks 100000 --dtype f16 [--fetch 1,2,3] [--index /tmp/x-f16.usearch]

Run once per ``--dtype`` (each in a process of its own, so the RSS each index adds is its own). The vectors and the
queries are ``bench/ann_recall.py``'s (clustered 384-d unit vectors in the real MiniLM space, real SciFact queries);
the index the embedded store's (usearch, inner product, M 16, efConstruction 128) with its vectors in ``--dtype``.
A search fetches ``m * k`` results from HNSW (ef at least that), scores them exactly against the f32 vectors and keeps
the ``k`` best, as the embedded store does. For each ef (the configured 128 and what ``search/ann.py``'s rule picks)
and each fetch multiplier ``m`` it prints recall@10 against exact search and the p50/p95 ms per search (one query at a
time, one thread, rescoring included); plus a 10% filter run by ``search/ann.py``'s plan; and the process RSS before
and after building the index (the index's own memory) and usearch's ``memory_usage``. Writes
``bench/results/ann-dtype-<N>-<dtype>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import scale_workspace as gen  # noqa: E402
from bench.ann_recall import exact_top, vectors  # noqa: E402
from bench.scale import log  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    import onnxruntime  # noqa: F401  (before usearch: the other order segfaults, see storage/sqlite/vectors.py)
    from usearch.index import Index

    from alexandria.search.ann import filtered_plan, hnsw_ef

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--dtype", default="f16", choices=("f32", "f16", "i8"))
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--fetch", default="1,2,3", help="fetch multipliers m: m * k results rescored exactly")
    p.add_argument("--ef", default="", help="more ef values to try, beside 128 and the rule's (comma-separated)")
    p.add_argument("--index", type=Path, default=None)
    p.add_argument("--threads", type=int, default=0, help="build threads (0: all cores)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    cache = Path(f"/tmp/ann-recall-embeddings-{args.queries}-{args.seed}.npz")
    if not cache.exists():
        raise SystemExit(f"{cache} missing: run bench/ann_recall.py once to embed the queries")
    with np.load(cache) as saved:
        centres, queries = saved["centres"], saved["queries"]
    n_docs = -(-args.chunks // gen.PER_DOC)
    data = vectors(n_docs, centres, args.seed)
    keys = np.arange(1, len(data) + 1, dtype=np.int64)
    k = 10
    truth = exact_top(data, queries, k) + 1
    rss_before = rss_mb()
    index = Index(ndim=gen.DIM, metric="ip", dtype=args.dtype, connectivity=16, expansion_add=128)
    build_s = None
    if args.index is not None and args.index.exists():
        index.load(str(args.index))
    else:
        t0 = time.perf_counter()
        for start in range(0, len(data), 50_000):
            index.add(keys[start : start + 50_000], data[start : start + 50_000], threads=args.threads)
        build_s = round(time.perf_counter() - t0, 1)
        if args.index is not None:
            index.save(str(args.index))
    rss_after = rss_mb()
    log(f"{args.dtype}: {len(index)} vectors, build {build_s} s, RSS +{rss_after - rss_before:.0f} MB, "
        f"usearch memory_usage {index.memory_usage / 2**20:.0f} MB")  # fmt: skip

    def run(
        ef: int, fetch: int, allowed: np.ndarray[Any, Any] | None
    ) -> tuple[list[np.ndarray[Any, Any]], list[float]]:
        found, times = [], []
        index.expansion_search = max(ef, fetch)  # type: ignore[misc]
        for q in queries:
            t0 = time.perf_counter()
            got = np.asarray(index.search(q, fetch, threads=1).keys, dtype=np.int64)
            if allowed is not None:
                got = got[allowed[got - 1]]
            exact = data[got - 1] @ q  # the embedded store rescores from its f32 matrix
            best = got[np.lexsort((got, -exact))][:k]
            times.append((time.perf_counter() - t0) * 1e3)
            found.append(best)
        return found, times

    def recall(found: list[np.ndarray[Any, Any]], want: np.ndarray[Any, Any]) -> float:
        return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, want, strict=True)]))

    rows = []
    rule_ef = hnsw_ef(128, k, len(data))
    for ef in sorted({128, rule_ef, *(int(x) for x in args.ef.split(",") if x)}):
        for m in [int(x) for x in args.fetch.split(",")]:
            found, times = run(ef, m * k, None)
            row = {"ef": ef, "fetch": m * k, "recall": round(recall(found, truth), 4),
                   "p50_ms": round(float(np.percentile(times, 50)), 3),
                   "p95_ms": round(float(np.percentile(times, 95)), 3)}  # fmt: skip
            rows.append(row)
            log(f"{args.dtype} {row}")
    rng = np.random.default_rng(7)
    mask = np.repeat(rng.random(n_docs) < 0.10, gen.PER_DOC)[: len(data)]
    allowed_idx = np.flatnonzero(mask)
    ftruth = allowed_idx[exact_top(data[allowed_idx], queries, k)] + 1
    plan = filtered_plan(len(allowed_idx), len(data), k, 128, 20_000)
    filtered = None
    if not plan.exact:
        found, times = run(plan.ef, plan.fetch, mask)
        filtered = {"share": 0.10, "fetch": plan.fetch, "ef": plan.ef, "recall": round(recall(found, ftruth), 4),
                    "p50_ms": round(float(np.percentile(times, 50)), 3)}  # fmt: skip
        log(f"{args.dtype} filter 10%: {filtered}")
    out = ROOT / "bench" / "results" / f"ann-dtype-{len(data)}-{args.dtype}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"chunks": len(data), "dtype": args.dtype, "build_s": build_s,
                               "rss_before_mb": round(rss_before), "rss_after_mb": round(rss_after),
                               "memory_usage_mb": round(index.memory_usage / 2**20), "by_ef": rows,
                               "filtered": filtered}, indent=1))  # fmt: skip
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
