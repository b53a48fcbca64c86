"""Offline HNSW recall against exact search, by ``ef``, at a size too large for the HTTP benchmark to be cheap.

    .venv/bin/python bench/ann_recall.py --chunks 1000000 [--queries 200] [--ef 128,256,...] [--index /tmp/x.usearch]

The vectors are ``bench/scale_workspace.py``'s (clustered 384-d unit vectors in the real MiniLM space, the same
centres, noise and seed), the queries real SciFact queries embedded with the real model, the index the embedded
store's (usearch, inner product, f32, the configured M and efConstruction). For each ``ef`` it prints recall@10 and
recall@100 against exact search (one matrix product per query block), ms per search (one query at a time, one
thread, as the server searches), and what ``search/ann.py``'s rule picks for k = 10 and k = 100 at this size; plus
the same under a random 10% and 1% filter as the embedded store runs it (oversampled HNSW, post-filtered, by
``search/ann.py``'s plan). The index is saved to ``--index`` (and reused when it exists: building 1M vectors takes
tens of minutes on two cores). Writes ``bench/results/ann-recall-<N>.json``.
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
from bench.scale import embed_all, log  # noqa: E402


def vectors(n_docs: int, centres: np.ndarray[Any, Any], seed: int) -> np.ndarray[Any, Any]:
    """The scale workspace's chunk vectors (same formula and seeds as ``scale_workspace._block``)."""
    weights = (np.arange(len(centres)) + 1.0) ** -0.5
    weights /= weights.sum()
    shape = centres - centres.mean(axis=0)
    shape = (shape / np.sqrt(np.square(shape).sum())).astype(np.float32)
    out = np.empty((n_docs * gen.PER_DOC, gen.DIM), dtype=np.float32)
    for first in range(0, n_docs, gen.BLOCK_DOCS):
        n = min(gen.BLOCK_DOCS, n_docs - first)
        rng = np.random.default_rng([seed, 2, first])
        cluster = rng.choice(len(centres), size=n, p=weights)
        docs = gen._normalise(centres[cluster] + gen.DOC_NOISE * (rng.standard_normal((n, len(shape))) @ shape))
        out[first * gen.PER_DOC : (first + n) * gen.PER_DOC] = gen._normalise(
            np.repeat(docs, gen.PER_DOC, axis=0)
            + gen.CHUNK_NOISE * (rng.standard_normal((n * gen.PER_DOC, len(shape))) @ shape)
        )
    return out


def exact_top(data: np.ndarray[Any, Any], queries: np.ndarray[Any, Any], k: int) -> np.ndarray[Any, Any]:
    sims = queries @ data.T
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def main() -> None:
    import onnxruntime  # noqa: F401  (before usearch: the other order segfaults, see storage/sqlite/vectors.py)
    from usearch.index import Index

    from alexandria.search.ann import filtered_plan, hnsw_ef

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--ef", default="128,192,256,384,512,768,1000")
    p.add_argument("--index", type=Path, default=None)
    p.add_argument("--threads", type=int, default=0, help="build threads (0: all cores)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--connectivity", type=int, default=16)
    p.add_argument("--expansion-add", type=int, default=128)
    args = p.parse_args()
    if not args.data.exists():
        args.data = Path("/work/shared/data")

    cache = Path(f"/tmp/ann-recall-embeddings-{args.queries}-{args.seed}.npz")
    if cache.exists():  # the real model's embeddings of the same texts: minutes on a loaded machine
        with np.load(cache) as saved:
            centres, queries = saved["centres"], saved["queries"]
    else:
        corpus = gen.load_corpus(args.data, args.queries, 0, 400, args.seed)
        embedded = embed_all({"cluster centres": corpus.centre_texts, "queries": corpus.queries})
        centres, queries = embedded["cluster centres"], embedded["queries"][: args.queries]
        np.savez(cache, centres=centres, queries=queries)
    n_docs = -(-args.chunks // gen.PER_DOC)
    t0 = time.perf_counter()
    data = vectors(n_docs, centres, args.seed)
    log(f"generated {len(data)} vectors in {time.perf_counter() - t0:.0f} s")
    keys = np.arange(1, len(data) + 1, dtype=np.int64)
    index = Index(ndim=gen.DIM, metric="ip", dtype="f32", connectivity=args.connectivity,
                  expansion_add=args.expansion_add)  # fmt: skip
    build_s = None
    if args.index is not None and args.index.exists():
        index.load(str(args.index))
        log(f"loaded {args.index} ({len(index)} vectors)")
    else:
        t0 = time.perf_counter()
        step = 50_000
        for start in range(0, len(data), step):
            index.add(keys[start : start + step], data[start : start + step], threads=args.threads)
            log(f"  built {min(start + step, len(data))}/{len(data)} ({time.perf_counter() - t0:.0f} s)")
        build_s = round(time.perf_counter() - t0, 1)
        if args.index is not None:
            index.save(str(args.index))
    truth10 = exact_top(data, queries, 10) + 1
    truth100 = exact_top(data, queries, 100) + 1
    rows: list[dict[str, Any]] = []
    for ef in [int(x) for x in args.ef.split(",")]:
        for k, truth in ((10, truth10), (100, truth100)):
            if ef < k:
                continue
            index.expansion_search = ef  # type: ignore[misc]
            found = []
            t0 = time.perf_counter()
            for q in queries:
                found.append(np.asarray(index.search(q, k, threads=1).keys))
            ms = (time.perf_counter() - t0) / len(queries) * 1e3
            recall = float(
                np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)])
            )
            rows.append({"ef": ef, "k": k, "recall": round(recall, 4), "ms": round(ms, 3)})
            log(f"ef {ef:5d} k {k:3d}: recall@{k} {recall:.4f}, {ms:.2f} ms/search")
    rule = {k: hnsw_ef(128, k, len(data)) for k in (10, 100)}
    log(f"search/ann.py picks ef {rule} at {len(data)} vectors")
    rule_rows = []
    for k, truth in ((10, truth10), (100, truth100)):
        index.expansion_search = rule[k]  # type: ignore[misc]
        t0 = time.perf_counter()
        found = [np.asarray(index.search(q, k, threads=1).keys) for q in queries]
        ms = (time.perf_counter() - t0) / len(queries) * 1e3
        recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]))
        rule_rows.append({"k": k, "ef": rule[k], "recall": round(recall, 4), "ms": round(ms, 3)})
        log(f"rule k {k}: ef {rule[k]} recall@{k} {recall:.4f}, {ms:.2f} ms/search")
    filtered = []
    rng = np.random.default_rng(7)
    for share in (0.10, 0.01):
        doc_mask = rng.random(n_docs) < share
        mask = np.repeat(doc_mask, gen.PER_DOC)[: len(data)]
        allowed_idx = np.flatnonzero(mask)
        for k in (10, 100):
            sims = queries @ data[allowed_idx].T
            top = np.argsort(-sims, axis=1)[:, :k]
            truth = allowed_idx[top] + 1
            plan = filtered_plan(len(allowed_idx), len(data), k, 128, 20_000)
            recalls, t0 = [], time.perf_counter()
            for q, t in zip(queries, truth, strict=True):
                if plan.exact:
                    s = data[allowed_idx] @ q
                    got = allowed_idx[np.argsort(-s)[:k]] + 1
                else:
                    index.expansion_search = plan.ef  # type: ignore[misc]
                    m = index.search(q, plan.fetch, threads=1)
                    ks = np.asarray(m.keys)
                    got = ks[mask[ks - 1]][:k]
                recalls.append(len(set(got.tolist()) & set(t.tolist())) / k)
            ms = (time.perf_counter() - t0) / len(queries) * 1e3
            row = {"share": share, "k": k, "candidates": len(allowed_idx), "exact": plan.exact, "fetch": plan.fetch,
                   "ef": plan.ef, "recall": round(float(np.mean(recalls)), 4), "ms": round(ms, 3)}  # fmt: skip
            filtered.append(row)
            log(f"filter {share:.0%} k {k}: {row}")
    out = ROOT / "bench" / "results" / f"ann-recall-{len(data)}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"chunks": len(data), "queries": len(queries), "build_s": build_s, "by_ef": rows,
                               "rule": rule_rows, "filtered": filtered}, indent=1))  # fmt: skip
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
