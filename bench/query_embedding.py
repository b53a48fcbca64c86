"""Where a query embedding's time goes (issue "Fast at a million chunks", item 6).

Run: ``.venv/bin/python bench/query_embedding.py [--queries 200] [--repeats 3]``

It measures, on the bundled all-MiniLM-L6-v2 graph, in one run and interleaved (so that a noisy machine affects every
configuration alike):

* tokenisation alone (WordPiece, Rust ``tokenizers``);
* the ONNX Runtime session on one query at a time, for sequence lengths 4-128 tokens: the intercept is the cost of
  streaming the weights (memory-bound at batch 1), the slope the cost per token (compute-bound);
* session options: intra-op threads 1 and 2, pool threads spinning or sleeping, graph optimisation basic vs all;
* real SciFact queries through the server's query session (``MiniLMEmbedder(threads=1)``), p50/p95/p99;
* the vectors of every configuration against the default's (none may change them).

Prints the load average beside the numbers: read them as ratios on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from alexandria.ingest.embedders import (
    ATTENTION_MASK,
    INPUT_IDS,
    OUTPUT,
    MiniLMEmbedder,
    _session_options,
    load_minilm_model,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _percentiles(ms: list[float]) -> str:
    ms = sorted(ms)
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return f"p50 {statistics.median(ms):6.2f}  p95 {pick(0.95):6.2f}  p99 {pick(0.99):6.2f}  min {ms[0]:6.2f}"


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=DATA / "scifact")
    args = ap.parse_args()

    model = load_minilm_model()
    tok = model.tokenizer
    queries = [json.loads(line)["text"] for line in (args.data / "queries.jsonl").open()][: args.queries]
    print(f"load average {os.getloadavg()[0]:.1f}; {len(queries)} queries from {args.data.name}", flush=True)

    def seq(text: str) -> list[int]:
        return [tok.cls_id, *tok.encode_ids(text)[:254], tok.sep_id]

    lengths = [len(seq(q)) for q in queries]
    tok_ms = _timed(lambda: [seq(q) for q in queries], args.repeats)
    print(f"tokens per query: mean {np.mean(lengths):.1f}, max {max(lengths)}")
    print(f"tokenisation: {min(tok_ms) / len(queries) * 1000:.0f} µs per query")

    def session(threads: int, spinning: bool, level: ort.GraphOptimizationLevel) -> ort.InferenceSession:
        opts = _session_options(threads, spinning)
        opts.graph_optimization_level = level
        return ort.InferenceSession(model.graph, sess_options=opts, providers=["CPUExecutionProvider"])

    full = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    configs = {
        "1 thread (server's query session)": session(1, True, full),
        "1 thread, pool sleeping": session(1, False, full),
        "2 threads": session(2, True, full),
        "1 thread, basic graph optimisation": session(1, True, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    }

    def run(sess: ort.InferenceSession, ids: np.ndarray[Any, Any]) -> Any:
        return sess.run([OUTPUT], {INPUT_IDS: ids, ATTENTION_MASK: np.ones_like(ids)})[0]

    print("\none query of L tokens, 1 thread (min over runs: the machine's noise only adds):")
    base = configs["1 thread (server's query session)"]
    points = []
    for length in (4, 8, 16, 32, 64, 128):
        ids = np.full((1, length), 1000, dtype=np.int64)
        best = min(_timed(lambda ids=ids: run(base, ids), 30 * args.repeats))
        points.append((length, best))
        print(f"  L={length:4d}  {best:6.2f} ms")
    slope, intercept = np.polyfit([p[0] for p in points], [p[1] for p in points], 1)
    print(f"  fit: {intercept:.2f} ms + {slope * 1000:.0f} µs/token (intercept: weights streamed at batch 1)")

    encoded = [np.asarray([seq(q)], dtype=np.int64) for q in queries]
    reference = np.vstack([run(base, ids) for ids in encoded])
    times: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, sess in configs.items():  # interleaved: every configuration sees the same load
            times[name] += _timed(lambda sess=sess: [run(sess, ids) for ids in encoded], 1)
    print("\nreal queries, session only (ms per query):")
    for name, sess in configs.items():
        drift = float(np.abs(np.vstack([run(sess, ids) for ids in encoded]) - reference).max())
        per_query = [t / len(encoded) for t in times[name]]
        print(f"  {name:38s} {min(per_query):6.2f} ms   max |Δvector| {drift:.1e}")

    embedder = MiniLMEmbedder(model=model, threads=1)
    end_to_end = [t for q in queries for t in _timed(lambda q=q: embedder.embed([q]), 1)]
    print(f"\nserver query path (MiniLMEmbedder.embed, 1 thread): {_percentiles(end_to_end)} ms")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
