"""The MCP door's overhead: the ``search_knowledge`` tool next to Dust's REST search on the same data, one command:
``.venv/bin/python bench/mcp_latency.py [--docs 1000] [--queries 100]``.

A real ``alexandria serve`` (real all-MiniLM-L6-v2, SQLite on disk) over the first ``--docs`` SciFact abstracts
(``../shared/data/scifact``; the data directory is kept under ``--work`` and reused while the document count is the
same, so the ingest is paid once). ``--queries`` SciFact queries, hybrid, top_k=10, one at a time on keep-alive
connections, through three clients in turn for each query (the order rotating from query to query):

- REST: ``GET /api/v1/w/{w}/spaces/{s}/data_sources/{ds}/search`` (httpx);
- MCP 2026-07-28: the real ``mcp`` client over Streamable HTTP (stateless: one POST per call);
- MCP 2025-11-25: the same client in handshake mode (``mode="legacy"``).

Each client first sends 10 warm-up queries. Prints p50 and p95 per client (ms), the load average before and after,
and one JSON object (last line).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from alexandria import evaluation
from alexandria.config import Settings
from alexandria.domain.models import Role
from alexandria.services.core import Core
from tests.live import live_server

REPO = Path(__file__).resolve().parent.parent


def default_data() -> Path:
    for up in (REPO.parent, REPO.parent.parent):
        if (up / "shared" / "data" / "scifact").is_dir():
            return up / "shared" / "data" / "scifact"
    return REPO.parent / "shared" / "data" / "scifact"


def prepare(work: Path, data: evaluation.BeirSet, docs: int) -> dict[str, str]:
    """The data directory with ``docs`` abstracts (reused when it already holds them) and a system key."""
    marker = work / "prepared.json"
    if marker.exists():
        info: dict[str, str] = json.loads(marker.read_text())
        if info.get("docs") == str(docs):
            return info
    data_dir = work / "data"
    if data_dir.exists():
        import shutil

        shutil.rmtree(data_dir)
    core = Core(Settings(data_dir=data_dir))
    try:
        ws, space = core.catalog.ensure_workspace("bench")
        ds = core.catalog.create_data_source(ws, "scifact")
        subset = evaluation.BeirSet(data.corpus[:docs], data.queries, data.qrels)
        t0 = time.perf_counter()
        evaluation.ingest_corpus(core, ds, subset, 1)
        print(f"ingested {docs} abstracts in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        _, key = core.keys.create(ws, Role.SYSTEM)
        info = {"docs": str(docs), "key": key, "space": space.sid, "ds": ds.sid}
    finally:
        core.close()
    marker.write_text(json.dumps(info))
    return info


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def measure(base: str, info: dict[str, str], queries: list[str]) -> dict[str, list[float]]:
    headers = {"Authorization": f"Bearer {info['key']}"}
    rest_path = f"/api/v1/w/bench/spaces/{info['space']}/data_sources/{info['ds']}/search"
    times: dict[str, list[float]] = {"rest": [], "mcp-2026-07-28": [], "mcp-2025-11-25": []}
    async with (
        httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as rest,
        httpx2.AsyncClient(headers=headers, timeout=120) as h1,
        httpx2.AsyncClient(headers=headers, timeout=120) as h2,
        Client(streamable_http_client(f"{base}/mcp", http_client=h1), mode="auto") as modern,
        Client(streamable_http_client(f"{base}/mcp", http_client=h2), mode="legacy") as legacy,
    ):

        async def via_rest(q: str) -> None:
            r = await rest.get(rest_path, params={"query": q, "top_k": 10})
            assert r.status_code == 200 and r.json()["documents"], r.text

        def via_mcp(client: Client) -> Callable[[str], Awaitable[None]]:
            async def call(q: str) -> None:
                args: dict[str, Any] = {"query": q, "top_k": 10, "knowledge_base_ids": [info["ds"]]}
                result = await client.call_tool("search_knowledge", args)
                assert not result.is_error and result.structured_content and result.structured_content["hits"]

            return call

        clients: list[tuple[str, Callable[[str], Awaitable[None]]]] = [
            ("rest", via_rest),
            ("mcp-2026-07-28", via_mcp(modern)),
            ("mcp-2025-11-25", via_mcp(legacy)),
        ]
        for _, fn in clients:  # warm-up
            for q in queries[:10]:
                await fn(q)
        for i, q in enumerate(queries):
            for name, fn in clients[i % 3 :] + clients[: i % 3]:
                t0 = time.perf_counter()
                await fn(q)
                times[name].append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=default_data())
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("/tmp/alexandria-bench-mcp"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data = evaluation.load_beir(args.data)
    info = prepare(args.work, data, args.docs)
    queries = list(data.queries.values())[: args.queries]
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1"}
    with live_server(args.work / "data", env, log_path=args.work / "server.log") as live:
        before = load()
        times = anyio.run(measure, live.base, info, queries)
        after = load()
    out: dict[str, Any] = {"docs": args.docs, "queries": len(queries), "load_before": before, "load_after": after}
    for name, values in times.items():
        p50 = statistics.median(values)
        p95 = sorted(values)[max(0, round(0.95 * len(values)) - 1)]
        out[name] = {"p50_ms": round(p50, 2), "p95_ms": round(p95, 2)}
        print(f"{name:>15}: p50 {p50:7.2f} ms   p95 {p95:7.2f} ms", file=sys.stderr)
    print(f"load average before {before}, after {after}", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
