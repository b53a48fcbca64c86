"""Does runaway SQL over tables starve the server? One command:
``.venv/bin/python bench/sql_isolation.py [--runaways 50] [--src DIR]``.

A real ``alexandria serve`` process on a fresh data directory (embedded store, the real embedding model unless
``--embedder``), two workspaces:

- ``hog``: one table of 1,000 rows, sent ``--runaways`` simultaneous runaway queries (a recursive CTE that never
  ends, stopped by the time limit, ``--sql-timeout-ms``);
- ``quiet``: a data source of 40 short documents, searched (hybrid, top 5) one request at a time.

It measures the quiet workspace's search latency idle, then while the runaways are in flight (the searches start
once every runaway has been sent), plus a trivial query of the hog's own table and one of the quiet workspace's
table sent at the same time, and how the runaways were answered (status, code, time). ``--src DIR`` runs the server
from another source tree (e.g. the code before the SQL pool: ``git archive <commit> src | tar -x -C /tmp/before``,
then ``--src /tmp/before/src``), for a before/after comparison on the same machine. Writes
``bench/results/sql_isolation[-LABEL].json``. The server is stopped once the measurements are done, whatever the
runaways still waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent
RUNAWAY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) AS n FROM c"
TRIVIAL = "SELECT count(*) AS n FROM events"
QUERIES = [
    "how do cells make energy", "photosynthesis in plants", "protein folding", "immune response to viruses",
    "DNA replication errors", "neurons and synapses", "bacterial resistance to antibiotics", "blood pressure",
]  # fmt: skip
TOPICS = [
    "Mitochondria produce most of the ATP of a cell through oxidative phosphorylation.",
    "Chloroplasts capture light energy and fix carbon dioxide into sugars.",
    "Chaperone proteins help newly made chains fold into their native shapes.",
    "T cells and antibodies clear viral infections and remember the virus.",
    "DNA polymerase proofreads the new strand and repairs most replication errors.",
    "Neurons signal each other across synapses with neurotransmitters.",
    "Bacteria acquire antibiotic resistance genes through plasmids.",
    "Arterial blood pressure depends on cardiac output and vascular resistance.",
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(pct(ms, 0.95), 1),
        "max_ms": round(max(ms), 1),
    }


class Server:
    def __init__(self, src: Path | None, workdir: Path, env_extra: dict[str, str]) -> None:
        self.env = dict(os.environ)
        paths = [str(src)] if src is not None else []
        if self.env.get("PYTHONPATH"):
            paths.append(self.env["PYTHONPATH"])
        self.env["PYTHONPATH"] = os.pathsep.join(paths)
        self.env.update(env_extra)
        self.data_dir = workdir / "data"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        cmd = [sys.executable, "-m", "alexandria.cli", *args, "--data-dir", str(self.data_dir)]
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env, check=False)
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        return done.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        cmd = [sys.executable, "-m", "alexandria.cli", "serve", "--data-dir", str(self.data_dir),
               "--port", str(self.port), "--log-level", "warning"]  # fmt: skip
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base}/api/v1/w/none/spaces", timeout=2)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.3)
        raise SystemExit(f"server did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait(f: Future[Any], limit_s: float) -> Any:
    try:
        return f.result(timeout=limit_s)
    except TimeoutError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runaways", type=int, default=50)
    parser.add_argument("--searches", type=int, default=12, help="searches measured idle and under load (each)")
    parser.add_argument("--sql-timeout-ms", type=int, default=10000)
    parser.add_argument("--embedder", default="minilm", help="minilm (the real model, default) or openai")
    parser.add_argument("--src", type=Path, default=None, help="run the server from this source tree")
    parser.add_argument("--label", default="", help="suffix of the results file (e.g. before)")
    parser.add_argument("--search-timeout-s", type=float, default=120.0)
    parser.add_argument(
        "--postgres", nargs="?", const="", default=None, metavar="URL",
        help="on PostgreSQL: this URL, or (no URL) a fresh embedded PostgreSQL server",
    )  # fmt: skip
    args = parser.parse_args()
    if args.postgres is None:
        bench(args, None)
    else:
        from backends import postgres_url

        with postgres_url(args.postgres or None) as url:
            bench(args, url)


def bench(args: argparse.Namespace, database_url: str | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="alexandria-sqliso-"))
    env = {"ALEXANDRIA_SQL_TIMEOUT_MS": str(args.sql_timeout_ms), "ALEXANDRIA_EMBEDDER": args.embedder}
    if database_url is not None:
        env["ALEXANDRIA_DATABASE_URL"] = database_url
    server = Server(args.src, workdir, env)
    try:
        hog_key = server.cli("keys", "create", "--workspace", "hog", "--role", "system")
        quiet_key = server.cli("keys", "create", "--workspace", "quiet", "--role", "system")
        hog_ds = server.cli("datasources", "create", "--workspace", "hog", "numbers")
        quiet_ds = server.cli("datasources", "create", "--workspace", "quiet", "notes")
        server.start()
        log(f"server up on {server.base} (src: {args.src or 'this tree'})")
        result = run(server.base, hog_key, hog_ds, quiet_key, quiet_ds, args)
    finally:
        server.stop()
        log_text = server.log_path.read_text() if server.log_path.exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)
    result["backend"] = "postgres" if database_url is not None else "sqlite"
    result["server_log_tail"] = log_text[-2000:]
    out = ROOT / "results" / f"sql_isolation{'-' + args.label if args.label else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "server_log_tail"}))


def trivial(answer: tuple[float, int, str, float | None] | None) -> Any:
    if answer is None:
        return "not answered within its time limit"
    return {"ms": round(answer[0], 1), "status": answer[1], "code": answer[2]}


def run(
    base: str, hog_key: str, hog_ds: str, quiet_key: str, quiet_ds: str, args: argparse.Namespace
) -> dict[str, Any]:
    hog = httpx.Client(base_url=f"{base}/api/v1/w/hog", headers={"Authorization": f"Bearer {hog_key}"}, timeout=600)
    quiet = httpx.Client(
        base_url=f"{base}/api/v1/w/quiet", headers={"Authorization": f"Bearer {quiet_key}"}, timeout=600
    )
    table = {"name": "events", "description": "d", "title": "Events", "table_id": "t1",
             "mime_type": "application/vnd.dust.table"}  # fmt: skip
    rows = [{"row_id": str(i), "value": {"n": i, "label": f"row {i}"}} for i in range(1000)]
    for client, ds in ((hog, hog_ds), (quiet, quiet_ds)):
        client.post(f"/data_sources/{ds}/tables", json=table).raise_for_status()
        client.post(f"/data_sources/{ds}/tables/t1/rows", json={"rows": rows}).raise_for_status()
    for i in range(40):
        text = f"{TOPICS[i % len(TOPICS)]} Note {i}."
        quiet.post(f"/data_sources/{quiet_ds}/documents/doc-{i}", json={"text": text}).raise_for_status()

    def search(i: int) -> float:
        t0 = time.perf_counter()
        params = {"query": QUERIES[i % len(QUERIES)], "top_k": 5}
        resp = quiet.get(f"/data_sources/{quiet_ds}/search", params=params, timeout=args.search_timeout_s)
        resp.raise_for_status()
        return (time.perf_counter() - t0) * 1000

    def sql(client: httpx.Client, ds: str, query: str) -> tuple[float, int, str, float | None]:
        sent = time.perf_counter()
        body = {"query": query, "tables": [{"data_source_id": ds, "table_id": "t1"}]}
        try:
            resp = client.post("/query_tables", json=body)
        except httpx.HTTPError as exc:
            return (time.perf_counter() - sent) * 1000, 0, type(exc).__name__, None
        err = resp.json().get("error", {}) if resp.status_code != 200 else {}
        code = (err.get("data_source_error") or {}).get("code") or err.get("type") or "ok"
        retry = resp.headers.get("retry-after")
        return (time.perf_counter() - sent) * 1000, resp.status_code, code, float(retry) if retry else None

    for i in range(3):
        search(i)  # warm-up (model, caches)
    sql(hog, hog_ds, TRIVIAL)
    sql(quiet, quiet_ds, TRIVIAL)
    idle = [search(i) for i in range(args.searches)]
    log(f"idle search: {summary(idle)}")

    pool = ThreadPoolExecutor(max_workers=args.runaways + 2)
    runaways = [pool.submit(sql, hog, hog_ds, RUNAWAY) for _ in range(args.runaways)]
    time.sleep(0.5)  # every runaway has arrived
    sent_at = time.perf_counter()
    trivial_hog: Future[tuple[float, int, str, float | None]] = pool.submit(sql, hog, hog_ds, TRIVIAL)
    trivial_quiet = pool.submit(sql, quiet, quiet_ds, TRIVIAL)
    loaded: list[float] = []
    stop_at: list[float] = []

    def searches() -> None:
        for i in range(args.searches):
            try:
                loaded.append(search(i))
            except httpx.HTTPError:
                loaded.append(args.search_timeout_s * 1000)
        stop_at.append(time.perf_counter())

    t = threading.Thread(target=searches)
    t.start()
    t.join()
    log(f"search under {args.runaways} runaways: {summary(loaded)}")
    answered_by_now = sum(f.done() for f in runaways)
    # a trivial query answers within its time limit, or it failed: wait no longer than that
    limit_s = max(args.sql_timeout_ms / 1000 - (time.perf_counter() - sent_at), 0) + 2
    th = wait(trivial_hog, limit_s)
    tq = wait(trivial_quiet, limit_s)
    outcomes: dict[str, int] = {}
    answer_ms: list[float] = []
    for f in runaways:
        if not f.done():
            outcomes["unanswered when the searches ended"] = outcomes.get("unanswered when the searches ended", 0) + 1
            continue
        ms, status, code, _ = f.result()
        outcomes[f"{status} {code}"] = outcomes.get(f"{status} {code}", 0) + 1
        answer_ms.append(ms)
    pool.shutdown(wait=False, cancel_futures=True)
    return {
        "runaways": args.runaways,
        "sql_timeout_ms": args.sql_timeout_ms,
        "src": str(args.src) if args.src else "this tree",
        "cpus": os.cpu_count(),
        "search_idle": summary(idle),
        "search_under_runaways": summary(loaded),
        "search_under_runaways_ms": [round(x, 1) for x in loaded],
        "trivial_query_same_table": trivial(th),
        "trivial_query_other_workspace": trivial(tq),
        "runaway_outcomes": outcomes,
        "runaways_answered_when_searches_ended": answered_by_now,
        "runaway_answer_ms": summary(answer_ms) if answer_ms else None,
    }


if __name__ == "__main__":
    main()
