"""Search latency while a bulk ingest runs, one command:
``.venv/bin/python bench/search_under_ingest.py [--baseline main]``.

For each source tree (this one, and with ``--baseline REF`` the tree of that git ref too, in the same run): a real
``alexandria serve`` process (1 index worker) on a fresh data directory, the real all-MiniLM-L6-v2 model, a system
key (no rate limit), SciFact abstracts (``../shared/data/scifact``):

1. preload ``--preload`` documents (async upserts, waited until indexed);
2. idle: one client sends ``--queries`` hybrid searches (SciFact queries, top_k=10) one after another;
3. under ingest, once per ``--ingest-clients`` value (default 8, then 32): that many clients upsert further abstracts
   synchronously (the request embeds), each new document once, while the search client sends the same searches
   again at the same pace (at least ``--min-load-s`` seconds). Ingest clients honour ``429 Retry-After``: they wait
   and send again.

Searches are paced (``--search-rate`` per second, one client, the next one sent at once when a search took longer
than its slot) so that both trees get the same search work and their ingest rates can be compared.

Reports search p50/p95/p99 idle and under ingest, the ingest rate and the upserts' latency and 429 count, and writes
``bench/results/search_under_ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from alexandria import evaluation

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
CLI_MODULE = ["-m", "alexandria.cli"]


def default_data() -> Path:
    """``../shared/data/scifact`` from the checkout (or from the repository of a git worktree under ``wt/``)."""
    for up in (REPO.parent, REPO.parent.parent):
        if (up / "shared" / "data" / "scifact").is_dir():
            return up / "shared" / "data" / "scifact"
    return REPO.parent / "shared" / "data" / "scifact"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary_ms(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "mean_ms": round(statistics.fmean(ms), 1) if ms else float("nan"),
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def baseline_tree(ref: str, into: Path) -> Path:
    """The ``src`` tree of git ``ref``, extracted into ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


@dataclass
class Server:
    src: Path
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    base: str = ""

    def __post_init__(self) -> None:
        self.env = {**os.environ, "PYTHONPATH": f"{self.src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.data_dir = self.workdir / "data"

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, *CLI_MODULE, *args], capture_output=True, text=True, env=self.env, check=False
        )
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        return done.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        port = free_port()
        log_file = (self.workdir / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *CLI_MODULE, "serve", "--data-dir", str(self.data_dir), "--port", str(port),
             "--log-level", "warning", "--workers", "1"],
            env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"server did not start: {(self.workdir / 'server.log').read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def body_of(title: str, text: str) -> dict[str, Any]:
    section = {"prefix": f"{title}\n" if title else None, "content": text, "sections": []}
    return {"title": title or None, "section": section, "light_document_output": True}


def run_tree(label: str, src: Path, args: argparse.Namespace, data: evaluation.BeirSet) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"alexandria-sui-{label}-"))
    server = Server(src, workdir)
    key = server.cli("keys", "create", "--data-dir", str(server.data_dir), "--workspace", "bench", "--role", "system")
    ds = server.cli("datasources", "create", "--data-dir", str(server.data_dir), "--workspace", "bench", "kb")
    server.start()
    root = f"/api/v1/w/bench/data_sources/{ds}"
    preload = data.corpus[: args.preload]
    rest = data.corpus[args.preload :]
    queries = list(data.queries.values())[: args.queries]
    params = [{"query": q, "top_k": 10, "search_mode": args.mode} for q in queries]
    out: dict[str, Any] = {"tree": label, "src": str(src)}
    try:
        headers = {"Authorization": f"Bearer {key}"}
        limits = httpx.Limits(max_connections=max(args.ingest_clients) + 4)
        with httpx.Client(base_url=server.base, headers=headers, timeout=600, limits=limits) as http:
            log(f"[{label}] preloading {len(preload)} documents (async upserts)")
            for doc_id, title, text in preload:
                resp = http.post(f"{root}/documents/{doc_id}", json={**body_of(title, text), "async": True})
                resp.raise_for_status()
            while int(http.get(f"{root}/check_upsert_queue").json()["running_count"]) > 0:
                time.sleep(0.5)
            for p in params[:20]:  # warm-up
                http.get(f"{root}/search", params=p).raise_for_status()

            log(f"[{label}] idle: {len(params)} searches, {args.search_rate}/s")
            pacer = Pacer(args.search_rate)
            idle = []
            for p in params:
                pacer.wait()
                idle.append(timed_search(http, root, p))
            out["search_idle"] = summary_ms(idle)
            log(f"[{label}] idle search {out['search_idle']}")

            out["under_ingest"] = []
            for clients in args.ingest_clients:
                phase = load_phase(label, http, root, rest, clients, params, args)
                out["under_ingest"].append(phase)
                rest = rest[phase["ingest"]["documents_taken"] :]
    finally:
        server.stop()
    return out


def load_phase(
    label: str,
    http: httpx.Client,
    root: str,
    docs: list[tuple[str, str, str]],
    clients: int,
    params: list[dict[str, Any]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Searches at the same pace while ``clients`` clients upsert ``docs`` synchronously."""
    log(f"[{label}] under ingest: {clients} clients upserting synchronously")
    ingest = Ingest(http, root, docs, clients)
    ingest.start()
    t0 = time.perf_counter()
    pacer = Pacer(args.search_rate)
    loaded: list[float] = []
    while len(loaded) < len(params) or time.perf_counter() - t0 < args.min_load_s:
        if ingest.exhausted.is_set():
            log(f"[{label}] ingest ran out of documents: add more or lower --queries/--min-load-s")
            break
        pacer.wait()
        loaded.append(timed_search(http, root, params[len(loaded) % len(params)]))
    load_s = time.perf_counter() - t0
    ingest.stop()
    out = {
        "search": summary_ms(loaded),
        "ingest": {
            "clients": clients,
            "seconds": round(load_s, 1),
            "documents_taken": ingest.next,
            "documents_upserted": ingest.done,
            "documents_per_s": round(ingest.done / load_s, 2),
            "responses_429": ingest.refused,
            "transport_retries": ingest.transport_retries,
            "upsert_latency": summary_ms(ingest.latencies),
            "errors": ingest.errors[:5],
        },
    }
    log(f"[{label}] search under ingest ({clients} clients) {out['search']}")
    log(f"[{label}] ingest {out['ingest']}")
    return out


class Pacer:
    """Open-loop pacing: the i-th call returns at ``t0 + i / rate`` (at once when behind)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.perf_counter()

    def wait(self) -> None:
        delay = self.next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        self.next = max(self.next + self.interval, time.perf_counter())  # behind: no burst to catch up


def timed_search(http: httpx.Client, root: str, params: dict[str, Any]) -> float:
    t = time.perf_counter()
    resp = http.get(f"{root}/search", params=params)
    elapsed = time.perf_counter() - t
    resp.raise_for_status()
    return elapsed


class Ingest:
    """``clients`` threads upserting the given documents synchronously, each once, until stopped."""

    def __init__(self, http: httpx.Client, root: str, docs: list[tuple[str, str, str]], clients: int) -> None:
        self.http, self.root, self.docs, self.clients = http, root, docs, clients
        self.next = 0
        self.done = 0
        self.refused = 0
        self.transport_retries = 0
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.exhausted = threading.Event()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopped.set()
        for t in self.threads:
            t.join()

    def _take(self) -> tuple[str, str, str] | None:
        with self.lock:
            if self.next >= len(self.docs):
                self.exhausted.set()
                return None
            self.next += 1
            return self.docs[self.next - 1]

    def _client(self) -> None:
        while not self.stopped.is_set():
            item = self._take()
            if item is None:
                return
            doc_id, title, text = item
            while not self.stopped.is_set():
                t = time.perf_counter()
                try:
                    resp = self.http.post(f"{self.root}/documents/{doc_id}", json=body_of(title, text))
                except httpx.TransportError:  # a pooled connection the server closed while we waited: send again
                    with self.lock:
                        self.transport_retries += 1
                    continue
                elapsed = time.perf_counter() - t
                if resp.status_code == 429:
                    with self.lock:
                        self.refused += 1
                    self.stopped.wait(float(resp.headers.get("Retry-After", "1")))
                    continue
                with self.lock:
                    if resp.status_code == 200:
                        self.done += 1
                        self.latencies.append(elapsed)
                    else:
                        self.errors.append(f"{resp.status_code} {resp.text[:200]}")
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--baseline", default=None, help="Also run the tree of this git ref (e.g. main) first.")
    parser.add_argument("--preload", type=int, default=300, help="Documents indexed before measuring.")
    parser.add_argument("--queries", type=int, default=150, help="Searches per phase.")
    parser.add_argument("--mode", default="hybrid", choices=["keyword", "vector", "hybrid"])
    parser.add_argument(
        "--ingest-clients", type=int, nargs="+", default=[8, 32], help="Concurrent sync-upsert clients, per phase."
    )
    parser.add_argument("--search-rate", type=float, default=4.0, help="Searches per second (paced, one client).")
    parser.add_argument("--min-load-s", type=float, default=45.0, help="Shortest phase under ingest.")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "search_under_ingest.json")
    args = parser.parse_args()

    data = evaluation.load_beir(args.data)
    trees: list[tuple[str, Path]] = []
    scratch = Path(tempfile.mkdtemp(prefix="alexandria-sui-trees-"))
    if args.baseline:
        trees.append((f"baseline ({args.baseline})", baseline_tree(args.baseline, scratch)))
    trees.append(("this tree", REPO / "src"))
    results = {
        "dataset": args.data.name,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "preload": args.preload,
        "mode": args.mode,
        "runs": [run_tree(label, src, args, data) for label, src in trees],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
