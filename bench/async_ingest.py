"""Async against sync ingestion over HTTP, one command: ``.venv/bin/python bench/async_ingest.py [--limit N]``.

A real ``alexandria serve`` process (with its in-process index workers) on a fresh data directory; a system key (so
no rate limit); the SciFact corpus (BEIR layout, 5,183 abstracts) upserted through the Dust document endpoint:

- sync: every document with ``light_document_output`` into one data source, timed from the first request to the
  last answer (each answer means the document is chunked, embedded and indexed);
- async: every document with ``async: true`` into a second data source, timed from the first request until
  ``check_upsert_queue`` answers ``running_count == 0`` (every document indexed).

Both paths send the same documents with the same client concurrency. Prints both times and their ratio, and writes
``bench/results/async_ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from alexandria import evaluation

ROOT = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "alexandria.cli"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Progress:
    """One status line on stderr, rewritten at most every half second."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.t0, self.last = label, total, time.perf_counter(), 0.0

    def show(self, done: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        sys.stderr.write(
            f"\r  {self.label}: {done}/{self.total} documents indexed, {elapsed:6.1f}s, {rate:6.1f} docs/s, "
            f"eta {eta:5.0f}s   "
        )
        sys.stderr.flush()

    def end(self, done: int) -> None:
        self.show(done, force=True)
        sys.stderr.write("\n")


def post_all(
    http: httpx.Client, root: str, docs: list[tuple[str, dict[str, Any]]], concurrency: int, on_done: Callable[[], None]
) -> None:
    def one(item: tuple[str, dict[str, Any]]) -> None:
        doc_id, body = item
        resp = http.post(f"{root}/documents/{doc_id}", json=body)
        if resp.status_code != 200:
            raise RuntimeError(f"{doc_id}: HTTP {resp.status_code} {resp.text[:300]}")
        on_done()

    with ThreadPoolExecutor(concurrency) as pool:
        for _ in pool.map(one, docs):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data" / "scifact")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N documents (quick runs).")
    parser.add_argument("--workers", type=int, default=1, help="Index worker threads of the server (default 1).")
    parser.add_argument("--concurrency", type=int, default=4, help="Concurrent HTTP requests of the client.")
    parser.add_argument("--only", choices=["sync", "async"], default=None, help="Run one path only.")
    args = parser.parse_args()

    data = evaluation.load_beir(args.data)
    corpus = data.corpus[: args.limit] if args.limit else data.corpus
    docs = [
        (doc_id, {"title": title or None, "section": {"prefix": f"{title}\n" if title else None, "content": text,
                                                      "sections": []}})
        for doc_id, title, text in corpus
    ]  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="alexandria-async-bench-"))
    data_dir = workdir / "data"
    env = {**os.environ}
    key = cli("keys", "create", "--data-dir", str(data_dir), "--workspace", "bench", "--role", "system", env=env)
    ds_sync = cli("datasources", "create", "--data-dir", str(data_dir), "--workspace", "bench", "sync", env=env)
    ds_async = cli("datasources", "create", "--data-dir", str(data_dir), "--workspace", "bench", "async", env=env)
    port = free_port()
    log_path = workdir / "server.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(data_dir), "--port", str(port), "--log-level", "warning",
         "--workers", str(args.workers)],
        env=env, stdout=log_file, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    results: dict[str, Any] = {
        "dataset": args.data.name,
        "documents": len(docs),
        "cpus": os.cpu_count(),
        "server_workers": args.workers,
        "client_concurrency": args.concurrency,
    }
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"server did not start: {log_path.read_text()}")
            time.sleep(0.2)
        log(f"server up on {base} ({args.workers} index workers); {len(docs)} SciFact documents, "
            f"{args.concurrency} concurrent requests")  # fmt: skip
        limits = httpx.Limits(max_connections=args.concurrency + 2)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=600, limits=limits) as http:
            warm = http.post(
                f"/api/v1/w/bench/data_sources/{ds_sync}/documents/warm-up", json={"text": "warm up the model"}
            )
            warm.raise_for_status()
            http.delete(f"/api/v1/w/bench/data_sources/{ds_sync}/documents/warm-up").raise_for_status()

            if args.only in (None, "sync"):
                log("sync: upserting (each answer = document indexed)")
                bar = Progress("sync ", len(docs))
                lock, count = threading.Lock(), [0]

                def tick() -> None:
                    with lock:
                        count[0] += 1
                        bar.show(count[0])

                body = [(d, {**b, "light_document_output": True}) for d, b in docs]
                t0 = time.perf_counter()
                post_all(http, f"/api/v1/w/bench/data_sources/{ds_sync}", body, args.concurrency, tick)
                sync_s = time.perf_counter() - t0
                bar.end(count[0])
                results["sync_s"] = round(sync_s, 2)
                results["sync_docs_per_s"] = round(len(docs) / sync_s, 2)

            if args.only in (None, "async"):
                log("async: enqueueing, then polling check_upsert_queue until running_count == 0")
                root = f"/api/v1/w/bench/data_sources/{ds_async}"
                bar = Progress("async", len(docs))
                body = [(d, {**b, "async": True}) for d, b in docs]
                t0 = time.perf_counter()
                enqueued = threading.Event()
                enqueue_s: list[float] = []

                def enqueue() -> None:
                    post_all(http, root, body, args.concurrency, lambda: None)
                    enqueue_s.append(time.perf_counter() - t0)
                    enqueued.set()

                sender = threading.Thread(target=enqueue)
                sender.start()
                while True:
                    running = int(http.get(f"{root}/check_upsert_queue").json()["running_count"])
                    indexed = indexed_count(data_dir, ds_async)
                    bar.show(indexed)
                    if enqueued.is_set() and running == 0:
                        break
                    time.sleep(0.25)
                async_s = time.perf_counter() - t0
                sender.join()
                bar.end(indexed_count(data_dir, ds_async))
                results["async_s"] = round(async_s, 2)
                results["async_enqueue_s"] = round(enqueue_s[0], 2)
                results["async_docs_per_s"] = round(len(docs) / async_s, 2)
                results["async_enqueue_docs_per_s"] = round(len(docs) / enqueue_s[0], 2)
    finally:
        proc.terminate()
        proc.wait(timeout=120)
        log_file.close()

    results["chunks"] = chunk_counts(data_dir, {"sync": ds_sync, "async": ds_async})
    shutil.rmtree(workdir, ignore_errors=True)
    if "sync_s" in results and "async_s" in results:
        results["async_over_sync"] = round(results["async_s"] / results["sync_s"], 3)
        if results["chunks"]["sync"] != results["chunks"]["async"]:
            raise SystemExit(f"the two paths stored different chunks: {results['chunks']}")
    out = ROOT / "results" / "async_ingest.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log("")
    if "sync_s" in results:
        log(f"sync : {results['sync_s']:8.1f} s  ({results['sync_docs_per_s']:.1f} docs/s)")
    if "async_s" in results:
        log(f"async: {results['async_s']:8.1f} s  ({results['async_docs_per_s']:.1f} docs/s; all enqueued after "
            f"{results['async_enqueue_s']:.1f} s, {results['async_enqueue_docs_per_s']:.0f} docs/s)")  # fmt: skip
    if "async_over_sync" in results:
        log(f"async / sync = {results['async_over_sync']:.3f}")
    log(f"written to {out}")
    print(json.dumps(results))


def indexed_count(data_dir: Path, ds_sid: str) -> int:
    with sqlite3.connect(f"file:{data_dir / 'alexandria.db'}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM documents d JOIN data_sources s ON s.id = d.data_source_id "
            "WHERE s.sid = ? AND d.index_state = 'indexed'",
            (ds_sid,),
        ).fetchone()
    return int(row[0])


def chunk_counts(data_dir: Path, sids: dict[str, str]) -> dict[str, int]:
    out = {}
    with sqlite3.connect(f"file:{data_dir / 'alexandria.db'}?mode=ro", uri=True) as conn:
        for name, sid in sids.items():
            row = conn.execute(
                "SELECT count(*) FROM chunks c JOIN data_sources s ON s.id = c.data_source_id WHERE s.sid = ?", (sid,)
            ).fetchone()
            out[name] = int(row[0])
    return out


if __name__ == "__main__":
    main()
