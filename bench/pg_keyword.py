"""PostgreSQL keyword search at size: best-first over impact-ordered postings vs aggregating every posting.

Run: ``.venv/bin/python bench/pg_keyword.py [--chunks 100000] [--queries 200]``

It starts an embedded PostgreSQL (``devtools/embedded_pg.py``), creates one data source and fills it straight in SQL
with N chunks of 120-180 consecutive words of real English text (SciFact, Cranfield and COVID-QA from
``../shared/data``, started at random words; the vector index is dropped, keyword search never reads it), builds the
keyword postings with the store's analyzer, then runs the same real SciFact queries (OR over their terms, top 10)
both ways,
interleaved, checking that both return the same chunks, and prints p50/p95/p99 and how many postings the queries
match. Read the numbers as ratios: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from alexandria.config import Settings
from alexandria.domain.filters import FilterSet
from alexandria.ingest.chunkers import Section
from alexandria.search.analysis import document_terms, query_terms
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from alexandria.storage.postgres import keyword_topk, search
from alexandria.storage.postgres.chunk_index import insert_postings
from bench.scale import default_data
from devtools.embedded_pg import start
from tests.fakes import HashingEmbedder

BATCH = 20_000


def _words(data: Path) -> list[str]:
    words: list[str] = []
    for name in ("scifact", "cranfield", "covidqa-chunk"):
        for line in (data / name / "corpus.jsonl").open():
            doc = json.loads(line)
            words.extend(f"{doc.get('title', '')} {doc['text']}".split())
    return words


def _explain(core: Core, ds: object, query: str) -> None:
    db = core.store.db  # type: ignore[attr-defined]
    with db.read() as conn:
        lexemes = sorted(set(query_terms(query)))
        plan = conn.all(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT w.lexeme, p.chunk_id, p.x FROM unnest(?::text[]) AS w(lexeme) "
            f"CROSS JOIN LATERAL (SELECT chunk_id, {keyword_topk.IMPACT_SQL} AS x FROM chunk_terms "
            f"WHERE data_source_id = ? AND lexeme = w.lexeme ORDER BY {keyword_topk.IMPACT_SQL} DESC LIMIT 64) AS p",
            (lexemes, ds.id),  # type: ignore[attr-defined]
        )
        print("\n".join(r[0] for r in plan))
        ids = [r[0] for r in conn.all("SELECT id FROM chunks WHERE data_source_id = ? LIMIT 500", (ds.id,))]  # type: ignore[attr-defined]
        plan = conn.all(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT p.chunk_id, p.lexeme, p.tf, p.length FROM unnest(?::bigint[]) AS c(id) "
            "CROSS JOIN LATERAL (SELECT chunk_id, lexeme, tf, length FROM chunk_terms WHERE chunk_id = c.id "
            "AND lexeme = ANY(?)) AS p",
            (ids, lexemes),
        )
        print("\n".join(r[0] for r in plan))
    rounds = []
    orig = keyword_topk.exact_scores

    def counting(conn, chunk_ids, *rest):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = orig(conn, chunk_ids, *rest)
        rounds.append((len(chunk_ids), round((time.perf_counter() - t0) * 1000, 1)))
        return out

    keyword_topk.exact_scores = counting  # type: ignore[assignment]
    t0 = time.perf_counter()
    core.store.keyword_search(ds, query, FilterSet(), 10)  # type: ignore[arg-type]
    print(
        f"{len(lexemes)} lexemes, rounds (candidates, ms): {rounds}, total {(time.perf_counter() - t0) * 1000:.0f} ms"
    )
    keyword_topk.exact_scores = orig  # type: ignore[assignment]


def _pct(ms: list[float], q: float) -> float:
    ms = sorted(ms)
    return ms[min(len(ms) - 1, int(q * len(ms)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--explain", action="store_true", help="print the plans and rounds of the first query")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="alexandria-pgkw-"))
    base.chmod(0o711)
    server = start(base / "pg", settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
    try:
        core = Core(Settings(data_dir=base / "data", database_url=server.url("postgres")))
        core.embedders.register("fake", HashingEmbedder())
        ws, _ = core.catalog.ensure_workspace("w")
        ds = core.catalog.create_data_source(ws, "kb", embedder="fake")
        core.documents.upsert(ds, UpsertRequest("seed", Section(None, "seed", ()), None), 0)
        db = core.store.db  # type: ignore[attr-defined]
        data = default_data()
        words, rng = _words(data), random.Random(1)
        started = time.perf_counter()
        with db.write() as conn:
            conn.execute(f"DROP INDEX IF EXISTS chunks_hnsw_{int(ds.id)}")
            doc_pk, emb = conn.one("SELECT document_pk, embedding FROM chunks WHERE data_source_id = ?", (ds.id,))
        for start_at in range(0, args.chunks, BATCH):
            texts = []
            for _ in range(min(BATCH, args.chunks - start_at)):
                n = rng.randint(120, 180)
                at = rng.randrange(len(words) - n)
                texts.append(" ".join(words[at : at + n]))
            analysed = [document_terms(t) for t in texts]
            with db.write() as conn:
                ids = conn.raw.execute(
                    "INSERT INTO chunks (data_source_id, document_pk, chunk_offset, text, hash, token_count, "
                    "embedding, length) SELECT %s, %s, 1 + o, t, md5(t), 150, %s, n "
                    "FROM unnest(%s::text[], %s::int[]) WITH ORDINALITY AS u(t, n, o) ORDER BY o RETURNING id",
                    (ds.id, doc_pk, emb, texts, [len(a) for a in analysed]),
                ).fetchall()
                insert_postings(conn.raw, int(ds.id), [(int(r[0]), a) for r, a in zip(ids, analysed, strict=True)])
            print(f"  {start_at + len(texts):,} chunks written", flush=True)
        with db.write() as conn:
            conn.execute(
                "UPDATE data_sources SET chunk_total = (SELECT count(*) FROM chunks WHERE data_source_id = ?), "
                "chunk_length_total = (SELECT sum(length) FROM chunks WHERE data_source_id = ?), "
                "stats_version = stats_version + 1 WHERE id = ?",
                (ds.id, ds.id, ds.id),
            )
            conn.execute("ANALYZE chunk_terms")
        with db.read() as conn:
            conn.execute("VACUUM chunk_terms")  # sets the visibility map, as autovacuum would: index-only scans
        print(f"loaded {args.chunks:,} chunks in {time.perf_counter() - started:.0f} s", flush=True)

        queries = [json.loads(line)["text"] for line in (data / "scifact" / "queries.jsonl").open()]
        queries = queries[: args.queries]
        store, none = core.store, FilterSet()
        full_aggregate = lambda *a: None  # noqa: E731  # top_k declining: the store aggregates every posting
        best_first = keyword_topk.top_k
        times: dict[str, list[float]] = {"best-first": [], "every posting": []}
        for q in queries[:10]:
            store.keyword_search(ds, q, none, 10)  # warm the caches
        if args.explain:
            _explain(core, ds, queries[0])
        mismatches = 0
        for q in queries:
            results = {}
            for name, fn in (("best-first", best_first), ("every posting", full_aggregate)):
                search.top_k = fn  # type: ignore[assignment]
                t0 = time.perf_counter()
                results[name] = [h.pk for h in store.keyword_search(ds, q, none, 10)]
                times[name].append((time.perf_counter() - t0) * 1000)
            mismatches += results["best-first"] != results["every posting"]
        search.top_k = best_first
        print(f"{args.chunks:,} chunks, {len(queries)} queries, top 10, load average {os.getloadavg()[0]:.1f}")
        for name, ms in times.items():
            print(
                f"  {name:14s} p50 {statistics.median(ms):7.1f} ms  "
                f"p95 {_pct(ms, 0.95):7.1f}  p99 {_pct(ms, 0.99):7.1f}"
            )
        print(f"  rankings that differ: {mismatches} (ties broken alike: expect 0)")
        core.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
