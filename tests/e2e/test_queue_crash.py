"""Crash recovery of the async-upsert queue on the real parts: a real `alexandria serve` process with its in-process
worker and the real model is SIGKILLed while documents are being indexed, restarted on the same data directory,
and must then index every document exactly once (chunk rows, keyword index and HNSW index all consistent)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from alexandria.ingest.chunkers import Section, SectionChunker
from alexandria.ingest.embedders import load_default_tokenizer
from alexandria.storage.sqlite.keyword_index import DataSourceKeywords
from alexandria.storage.sqlite.vectors import DataSourceIndex, HnswParams
from tests.live import LiveServer, free_port, run_cli, start_server

pytestmark = pytest.mark.e2e

N_DOCS = 200
WORDS = (
    "river mountain cloud forest ocean desert valley island glacier canyon meadow harbor volcano prairie lagoon "
    "tundra reef delta plateau marsh orchard quarry summit basin estuary fjord savanna steppe grove"
).split()


def document_text(i: int) -> str:
    """Some prose with a phrase found in no other document; sizes vary so that some documents take 2-3 chunks."""
    rng = random.Random(i)
    n = rng.choice([40, 80, 160, 320])
    body = " ".join(rng.choice(WORDS) for _ in range(n))
    return f"Report {i} mentions the codeword qx{i}zeta. {body}."


class Server:
    """The server of one data directory, started, SIGKILLed and restarted by the test: always on the same port, always
    logging to the same file."""

    def __init__(self, data: Path, env: dict[str, str]) -> None:
        self.data, self.env = data, env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = data.parent / f"server-{self.port}.log"
        self.live: LiveServer | None = None

    def start(self) -> None:
        self.live = start_server(self.data, self.env, "--workers", "1", port=self.port, log_path=self.log_path)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, kill: bool = False) -> None:
        if self.live is not None:
            self.live.stop(kill=kill, timeout=60)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Server, str, str]]:
    data = tmp_path / "data"
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": "1", "ALEXANDRIA_JOB_BATCH_SIZE": "16"}
    key = run_cli("keys", "create", "--data-dir", str(data), "--workspace", "acme", "--role", "system", env=env)
    ds = run_cli("datasources", "create", "--data-dir", str(data), "--workspace", "acme", "crashy", env=env)
    server = Server(data, env)
    try:
        yield server, key, ds
    finally:
        server.stop(kill=True)


def running_count(http: httpx.Client, ds: str) -> int:
    resp = http.get(f"/api/v1/w/acme/data_sources/{ds}/check_upsert_queue")
    assert resp.status_code == 200, resp.text
    return int(resp.json()["running_count"])


def test_sigkill_while_indexing_loses_nothing_and_duplicates_nothing(setup: tuple[Server, str, str]) -> None:
    server, key, ds = setup
    headers = {"Authorization": f"Bearer {key}"}
    texts = {f"doc-{i:03d}": document_text(i) for i in range(N_DOCS)}

    # 1. queue every document, then kill the server while the worker is part-way through the queue
    server.start()
    with httpx.Client(base_url=server.base, headers=headers, timeout=60) as http:
        for doc_id, text in texts.items():
            resp = http.post(f"/api/v1/w/acme/data_sources/{ds}/documents/{doc_id}", json={"text": text, "async": True})
            assert resp.status_code == 200 and resp.json() == {"document": {"document_id": doc_id}}, resp.text
        deadline = time.time() + 60
        while (left := running_count(http, ds)) > N_DOCS - 20:  # wait until some batches are done...
            assert time.time() < deadline, f"the worker made no progress: {server.logs()}"
            time.sleep(0.05)
        assert left > 0, "the queue drained before the crash; make the documents longer"
    server.stop(kill=True)
    db_path = server.data / "alexandria.db"
    with sqlite3.connect(db_path) as conn:
        states = dict(conn.execute("SELECT index_state, count(*) FROM documents GROUP BY 1").fetchall())
        live = conn.execute("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')").fetchone()[0]
    assert states.get("pending", 0) == live > 0 and states.get("indexed", 0) > 0, states  # ...but not all

    # 2. restart on the same data directory: the dead worker's jobs are requeued at start-up (its process is gone,
    # so there is no need to wait for their 60 s leases to expire) and finished
    server.start()
    with httpx.Client(base_url=server.base, headers=headers, timeout=60) as http:
        deadline = time.time() + 45
        while running_count(http, ds) > 0:
            assert time.time() < deadline, f"the queue did not drain after the restart: {server.logs()}"
            time.sleep(0.2)
        for doc_id in random.Random(7).sample(sorted(texts), 5):
            query = f"codeword qx{int(doc_id.split('-')[1])}zeta"
            search = f"/api/v1/w/acme/data_sources/{ds}/search"
            resp = http.get(search, params={"query": query, "top_k": 3})
            assert resp.status_code == 200, resp.text  # hybrid: searches the HNSW index too, bringing it in step
            resp = http.get(search, params={"query": query, "top_k": 3, "search_mode": "keyword"})
            assert resp.status_code == 200, resp.text
            assert resp.json()["documents"][0]["document_id"] == doc_id
    server.stop()  # graceful: the HNSW cache is saved, so its file shows what the server had in memory

    # 3. every document indexed exactly once
    with sqlite3.connect(db_path) as conn:
        ds_id, chunk_size, version = conn.execute(
            "SELECT id, chunk_size, vector_version FROM data_sources WHERE sid = ?", (ds,)
        ).fetchone()
        docs = conn.execute(
            "SELECT id, document_id, index_state, chunk_count, text FROM documents WHERE data_source_id = ?", (ds_id,)
        ).fetchall()
        assert sorted(d[1] for d in docs) == sorted(texts)
        assert {d[2] for d in docs} == {"indexed"}
        chunker = SectionChunker(load_default_tokenizer(), int(chunk_size))
        per_doc = dict(conn.execute("SELECT document_pk, count(*) FROM chunks GROUP BY 1").fetchall())
        for pk, doc_id, _, chunk_count, text in docs:
            assert text == texts[doc_id]
            expected = len(chunker.chunk(Section(None, text, ())))
            assert per_doc.get(pk, 0) == chunk_count == expected, doc_id
        assert max(per_doc.values()) >= 2  # some documents span several chunks
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM chunks GROUP BY document_pk, chunk_offset HAVING count(*) > 1)"
        ).fetchone()[0]
        assert duplicates == 0
        chunk_ids = sorted(r[0] for r in conn.execute("SELECT id FROM chunks WHERE data_source_id = ?", (ds_id,)))
        assert len(chunk_ids) == sum(per_doc.values())
        jobs = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY 1").fetchall())
        assert set(jobs) == {"done"} and jobs["done"] == N_DOCS, jobs

    keywords = DataSourceKeywords(server.data / "keyword" / f"ds_{ds_id}")  # the keyword index: every chunk once
    assert (keywords.version, sorted(keywords.ids())) == (version, chunk_ids)

    index_path = server.data / "vectors" / f"ds_{ds_id}.usearch"
    dim = int(json.loads(index_path.with_suffix(".json").read_text())["dim"])
    index = DataSourceIndex(index_path, dim, HnswParams())
    index.load()
    assert index.version == version
    assert sorted(np.asarray(index.index.keys, dtype=np.int64).tolist()) == chunk_ids
