"""The scale benchmark: a generated workspace of N chunks, imported, served, and queried over HTTP, on the embedded
store and on PostgreSQL side by side.

    .venv/bin/python bench/scale.py --chunks 10000 [--chunks 100000] [--backends sqlite,postgres] [--queries 200]

For each N (1,000,000 is opt-in: ``--chunks 1000000``):

1. Generates the workspace as an ``alexandria export`` file (``bench/scale_workspace.py``: clustered 384-d vectors
   in the real model's space, ~150-word English chunks, 10 per document, a tag on 10% of the documents and another
   on 1%; how and why is in that module's docstring), computing on the way the exact top-10 of every query.
2. Per backend: ``alexandria import`` into a fresh store (a data directory; or a new database of a PostgreSQL 18 +
   pgvector started with ``devtools/embedded_pg.py``, fsync and synchronous_commit off as in ``bench/backends.py``,
   or of ``--database-url``), timed as chunks/s; the store's disk size (data directory, or ``pg_database_size``).
3. Starts ``alexandria serve --workers 0`` on it, times the first query, warms up (``--warmup`` other queries per
   mode), records the server's RSS (its process tree; PostgreSQL's own processes are not counted), then sends the
   ``--queries`` real SciFact queries one at a time through the Dust search route (``top_k=10``), each query in
   every mode in turn (so load spikes on the shared machine hit all modes alike): keyword, vector, hybrid, and
   vector and hybrid with ``tags_in`` the 10% tag and the 1% tag. Latency is the client's wall time per request,
   query embedding included. recall@10 of the vector modes is against exact search over the generated vectors
   (respecting the filter), for the query vectors the server embeds (``score_delta_max``: the largest difference
   between the server's score of a returned chunk and its exact cosine, over the returned chunks that are in the
   exact top-10; ~1e-6 when the embeddings agree).
4. The 1-minute load average is sampled every 2 s during each phase (the machine may be shared).

Prints a table per N (both backends side by side) and writes ``bench/results/scale-<N>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # bench/ and devtools/ from the repository root

from bench import scale_workspace as gen  # noqa: E402

MODES: list[tuple[str, str, str | None]] = [  # label, search_mode, tags_in
    ("keyword", "keyword", None),
    ("vector", "vector", None),
    ("hybrid", "hybrid", None),
    ("vector_tag10", "vector", gen.TAG_10),
    ("vector_tag1", "vector", gen.TAG_1),
    ("hybrid_tag10", "hybrid", gen.TAG_10),
    ("hybrid_tag1", "hybrid", gen.TAG_1),
]
EXACT_FOR = {"vector": "all", "vector_tag10": "tag10", "vector_tag1": "tag1"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))], 1)


class LoadSampler:
    """The 1-minute load average, sampled every ``every`` seconds while in use."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        s = self.samples or [os.getloadavg()[0]]
        return {"min": round(min(s), 2), "mean": round(sum(s) / len(s), 2), "max": round(max(s), 2)}


# --- generation -------------------------------------------------------------------------------------------------


def embed_all(groups: dict[str, list[str]]) -> dict[str, np.ndarray[Any, Any]]:
    """Real all-MiniLM-L6-v2 embeddings (the server's model and code) of each group of texts, with progress."""
    from alexandria.ingest.embedders import load_default_embedder

    embedder = load_default_embedder()
    result = {}
    for what, texts in groups.items():
        out = []
        t0 = time.perf_counter()
        for start in range(0, len(texts), 32):
            out.append(np.asarray(embedder.embed(texts[start : start + 32]), dtype=np.float32))
            log(f"  embedding {what}: {min(start + 32, len(texts))}/{len(texts)} ({time.perf_counter() - t0:.0f} s)")
        result[what] = np.concatenate(out)
    return result


def generate_file(path: Path, n: int, corpus: gen.Corpus, centres: np.ndarray[Any, Any],
                  queries: np.ndarray[Any, Any], seed: int) -> tuple[gen.Generated, dict[str, Any]]:  # fmt: skip
    t0 = time.perf_counter()
    done = [0]
    docs = -(-n // gen.PER_DOC)

    def progress(k: int) -> None:
        done[0] += k
        if done[0] % 10_000 < k or done[0] == docs:
            log(f"  generating: {done[0] * gen.PER_DOC:,}/{docs * gen.PER_DOC:,} chunks "
                f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip

    with open(path, "w", encoding="utf-8", buffering=1 << 20) as out:
        generated = gen.generate(out, n, corpus.words, centres, queries, seed=seed, on_docs=progress)
    info = {"seconds": round(time.perf_counter() - t0, 1), "file_mb": round(path.stat().st_size / 2**20, 1),
            "documents": generated.documents, "tagged_documents": generated.tagged,
            # how close the data is to the queries (next to the real query -> best real passage cosine in main())
            "exact_top1_cosine_mean": round(float(np.mean(generated.exact["all"].best_scores())), 3),
            "exact_top10_cosine_mean": round(float(np.mean(generated.exact["all"].scores)), 3)}  # fmt: skip
    return generated, info


# --- one backend ------------------------------------------------------------------------------------------------


@contextmanager
def postgres_server(given: str | None) -> Iterator[Any]:
    """A PostgreSQL to create the benchmark databases in: ``given`` (a URL, used as is) or an embedded one."""
    if given:
        yield given
        return
    from devtools.embedded_pg import start

    base = Path(tempfile.mkdtemp(prefix="alexandria-scale-pg-"))
    base.chmod(0o711)
    server = start(base / "data", settings={"fsync": "off", "synchronous_commit": "off"})
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def store_args(backend: str, work: Path, pg: Any, n: int) -> tuple[list[str], str | None]:
    """The CLI arguments naming a fresh store, and its database URL (None for the embedded store)."""
    if backend == "sqlite":
        return ["--data-dir", str(work / "sqlite")], None
    url = pg if isinstance(pg, str) else pg.create_database(f"scale{n}_{int(time.time())}")
    return ["--database-url", url], url


def disk_bytes(backend: str, work: Path, url: str | None) -> int:
    if url is None:
        return sum(f.stat().st_size for f in (work / "sqlite").rglob("*") if f.is_file())
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def tree_rss(pid: int) -> int:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "alexandria.cli", *args]


def run_backend(backend: str, n: int, export: Path, work: Path, pg: Any, generated: gen.Generated,
                query_texts: list[str], warmup_texts: list[str]) -> dict[str, Any]:  # fmt: skip
    args, url = store_args(backend, work, pg, n)
    out: dict[str, Any] = {}
    with LoadSampler() as load:
        log(f"== {backend}: alexandria import ({n:,} chunks)")
        t0 = time.perf_counter()
        subprocess.run(cli("import", *args, str(export)), check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
    out["import"] = {"seconds": round(seconds, 1), "chunks_per_s": round(generated.chunks / seconds),
                     "load_avg": load.summary()}  # fmt: skip
    out["disk_mb"] = round(disk_bytes(backend, work, url) / 2**20, 1)
    log(f"  {out['import']}, disk {out['disk_mb']} MB")
    port = free_port()
    # no query-vector cache: every mode of a query embeds it afresh, as a first-time query does
    env = {**os.environ, "ALEXANDRIA_QUERY_CACHE_SIZE": "0"}
    server = subprocess.Popen(
        cli("serve", *args, "--port", str(port), "--workers", "0", "--log-level", "warning"), env=env
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 300
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"alexandria serve did not start ({backend})")
            time.sleep(0.3)
        out["rss_mb_started"] = round(tree_rss(server.pid) / 2**20, 1)
        with LoadSampler() as load:
            out |= query_all(base, generated, query_texts, warmup_texts, server.pid)
        out["queries_load_avg"] = load.summary()
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return out


def query_all(base: str, g: gen.Generated, queries: list[str], warmup: list[str], pid: int) -> dict[str, Any]:
    path = f"/api/v1/w/{g.workspace}/spaces/{g.space}/data_sources/{g.data_source}/search"
    exact = {label: g.exact[name] for label, name in EXACT_FOR.items()}
    truth = {label: e.top_sets() for label, e in exact.items()}
    exact_score = {label: e.score_maps() for label, e in exact.items()}
    times: dict[str, list[float]] = {label: [] for label, _, _ in MODES}
    recalls: dict[str, list[float]] = {label: [] for label in EXACT_FOR}
    deltas: dict[str, list[float]] = {label: [] for label in EXACT_FOR}
    hits: dict[str, list[int]] = {label: [] for label, _, _ in MODES}
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {g.key}"}, timeout=600) as http:

        def ask(query: str, mode: str, tag: str | None) -> tuple[float, list[tuple[int, float]]]:
            params: dict[str, Any] = {"query": query, "top_k": 10, "search_mode": mode}
            if tag:
                params["tags_in"] = tag
            t0 = time.perf_counter()
            resp = http.get(path, params=params)
            ms = (time.perf_counter() - t0) * 1000
            resp.raise_for_status()
            found = [(int(d["document_id"][4:]) * gen.PER_DOC + int(c["offset"]), float(c["score"]))
                     for d in resp.json()["documents"] for c in d["chunks"]]  # fmt: skip
            return ms, found

        out["first_query_ms"] = round(ask(warmup[0], "hybrid", None)[0], 1)  # the first search after start
        for q in warmup:
            for _, mode, tag in MODES:
                ask(q, mode, tag)
        out["rss_mb_warm"] = round(tree_rss(pid) / 2**20, 1)
        t0 = time.perf_counter()
        for i, q in enumerate(queries):
            for label, mode, tag in MODES:
                ms, found = ask(q, mode, tag)
                times[label].append(ms)
                hits[label].append(len(found))
                if label in truth:
                    got = {cid for cid, _ in found}
                    recalls[label].append(len(got & truth[label][i]) / max(1, min(10, len(truth[label][i]))))
                    deltas[label] += [abs(s - exact_score[label][i][c]) for c, s in found if c in exact_score[label][i]]
            if (i + 1) % 20 == 0 or i + 1 == len(queries):
                log(f"  queries: {i + 1}/{len(queries)} x {len(MODES)} modes ({time.perf_counter() - t0:.0f} s)")
        out["rss_mb_end"] = round(tree_rss(pid) / 2**20, 1)
    modes: dict[str, Any] = {}
    for label, _, _ in MODES:
        v = times[label]
        modes[label] = {"p50_ms": pct(v, 50), "p95_ms": pct(v, 95), "p99_ms": pct(v, 99),
                        "mean_hits": round(float(np.mean(hits[label])), 2)}  # fmt: skip
        if label in recalls:
            modes[label]["recall@10"] = round(float(np.mean(recalls[label])), 4)
            modes[label]["score_delta_max"] = float(f"{max(deltas[label], default=0.0):.2g}")
    out["modes"] = modes
    return out


# --- report -----------------------------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    """Both backends side by side: rows are metrics, one column per backend."""
    backends = [b for b in ("sqlite", "postgres") if b in result["backends"]]
    lines = [f"| {result['chunks']:,} chunks | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]

    def row(name: str, cell: Any) -> None:
        lines.append(f"| {name} | " + " | ".join(cell(result["backends"][b]) for b in backends) + " |")

    row("import", lambda r: f"{r['import']['seconds']} s ({r['import']['chunks_per_s']:,} chunks/s)")
    row("disk", lambda r: f"{r['disk_mb']:,} MB")
    row("server RSS warm / end", lambda r: f"{r['rss_mb_warm']:,} / {r['rss_mb_end']:,} MB")
    row("first query (hybrid)", lambda r: f"{r['first_query_ms']} ms")
    for label, _, _ in MODES:

        def cell(r: dict[str, Any], label: str = label) -> str:
            m = r["modes"][label]
            rec = f" (recall {m['recall@10']:.3f})" if "recall@10" in m else ""
            return f"{m['p50_ms']} / {m['p95_ms']} / {m['p99_ms']} ms{rec}"

        row(f"{label} p50 / p95 / p99", cell)
    row("load avg import (min-max)", lambda r: f"{r['import']['load_avg']['min']}-{r['import']['load_avg']['max']}")
    row("load avg queries (min-mean-max)", lambda r: "{min}-{mean}-{max}".format(**r["queries_load_avg"]))
    return "\n".join(lines)


def default_data() -> Path:
    """``shared/data`` next to the checkout (or next to a parent directory of it, for git worktrees)."""
    for parent in ROOT.parents:
        if (parent / "shared" / "data" / "scifact").is_dir():
            return parent / "shared" / "data"
    return ROOT.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, action="append", help="N (repeatable; default 10000).")
    parser.add_argument("--backends", default="sqlite,postgres", help="Comma-separated: sqlite, postgres.")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5, help="Warm-up queries per mode (not measured).")
    parser.add_argument("--clusters", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=default_data(), help="The shared BEIR sets (../shared/data).")
    parser.add_argument("--database-url", default=None, help="An empty PostgreSQL database to import into (one N "
                        "per run) instead of a new database of an embedded server.")  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None, help="Keep the export files and SQLite stores here.")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    sizes = args.chunks or [10_000]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not set(backends) <= {"sqlite", "postgres"}:
        parser.error("--backends takes sqlite and/or postgres")
    log("== loading texts and queries, embedding the cluster centres and the queries with the real model")
    corpus = gen.load_corpus(args.data, args.queries, args.warmup, args.clusters, args.seed)
    embedded = embed_all({"cluster centres": corpus.centre_texts, "queries": corpus.queries})
    centres, all_queries = embedded["cluster centres"], embedded["queries"]
    real_best = round(float(np.mean((all_queries[: args.queries] @ centres.T).max(axis=1))), 3)
    query_texts, warmup_texts = corpus.queries[: args.queries], corpus.queries[args.queries :]
    root = args.keep or Path(tempfile.mkdtemp(prefix="alexandria-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        with postgres_server(args.database_url) if "postgres" in backends else _nothing() as pg:
            for n in sizes:
                work = root / f"scale-{n}"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                log(f"== generating {n:,} chunks")
                export = work / "workspace.jsonl"
                generated, info = generate_file(export, n, corpus, centres, all_queries[: args.queries], args.seed)
                result: dict[str, Any] = {
                    "chunks": generated.chunks, "cpus": os.cpu_count(), "queries": args.queries,
                    "clusters": args.clusters, "seed": args.seed, "generated": info, "backends": {},
                    "real_query_best_centre_passage_cosine_mean": real_best,
                }  # fmt: skip
                args.results.mkdir(parents=True, exist_ok=True)
                for backend in backends:
                    result["backends"][backend] = run_backend(backend, n, export, work, pg, generated,
                                                              query_texts, warmup_texts[: args.warmup])  # fmt: skip
                    (args.results / f"scale-{n}.json").write_text(json.dumps(result, indent=2) + "\n")  # so far
                print(table(result), flush=True)
                if args.keep is None:
                    shutil.rmtree(work, ignore_errors=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
