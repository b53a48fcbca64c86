"""Scale-out indexing on PostgreSQL: two real ``alexandria worker`` processes (real model) share one queue; one is
SIGKILLed while it holds leases. Its jobs must be claimed again by the survivor once their (short) leases expire,
and every document must end indexed exactly once: its chunks present once, the BM25 statistics in step, every job
done."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg
import pytest

from alexandria.config import Settings
from alexandria.domain.jobs import IndexState, JobState
from alexandria.ingest.chunkers import Section, SectionChunker
from alexandria.ingest.embedders import load_default_tokenizer
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from tests.live import CLI

pytestmark = pytest.mark.e2e

N_DOCS = 60
LEASE_S = 3
WORDS = (
    "river mountain cloud forest ocean desert valley island glacier canyon meadow harbor volcano prairie lagoon "
    "tundra reef delta plateau marsh orchard quarry summit basin estuary fjord savanna steppe grove"
).split()


def document_text(i: int) -> str:
    """Short prose with a codeword no other document has; a few documents take two chunks."""
    rng = random.Random(i)
    body = " ".join(rng.choice(WORDS) for _ in range(rng.choice([60, 120, 120, 300])))
    return f"Note {i} carries the codeword qx{i}zeta. {body}."


def now_ms() -> int:
    return int(time.time() * 1000)


def owner_pid(owner: str) -> int:
    """The process id in a lease owner (``host|pid|token|name``, see ``alexandria.services.jobs.owner_id``)."""
    return int(owner.split("|")[1])


@dataclass
class Worker:
    """One ``alexandria worker --threads 1`` process, logging to ``log_path``."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    @classmethod
    def start(cls, data: Path, env: dict[str, str], log_path: Path) -> Worker:
        log_file = log_path.open("wb")
        command = [*CLI, "worker", "--data-dir", str(data), "--threads", "1"]
        proc = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        return cls(proc, log_path, log_file)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def logs(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> None:
        """Until it has loaded the model and started its threads (its start-up recovery has run)."""
        deadline = time.monotonic() + timeout
        while "worker ready" not in self.logs():
            assert self.proc.poll() is None, f"worker exited during start-up:\n{self.logs()}"
            assert time.monotonic() < deadline, f"worker not ready after {timeout} s:\n{self.logs()}"
            time.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.log_file.close()


@pytest.fixture
def setup(pg_url: str, tmp_path: Path) -> Iterator[tuple[Core, dict[str, str], Path]]:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "ALEXANDRIA_DATABASE_URL": pg_url,
        "ALEXANDRIA_JOB_LEASE_S": str(LEASE_S),
        "ALEXANDRIA_JOB_BATCH_SIZE": "8",
        "ALEXANDRIA_JOB_POLL_INTERVAL_S": "0.1",
        "ALEXANDRIA_EMBEDDER_THREADS": "1",
    }
    core = Core(Settings(data_dir=data, database_url=pg_url))
    try:
        yield core, env, data
    finally:
        core.close()


def test_two_workers_one_sigkilled_index_every_document_exactly_once(
    setup: tuple[Core, dict[str, str], Path], pg_url: str, tmp_path: Path
) -> None:
    core, env, data = setup
    ws, _ = core.catalog.ensure_workspace("acme")
    ds = core.catalog.create_data_source(ws, "docs")  # the real model
    texts = {f"doc-{i:02d}": document_text(i) for i in range(N_DOCS)}
    workers = [Worker.start(data, env, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        # 1. both workers up (each has run its start-up recovery), then queue the upserts through the core
        for w in workers:
            w.wait_ready()
        for doc_id, text in texts.items():
            result = core.documents.upsert_async(ds, UpsertRequest(doc_id, Section(None, text, ())), now_ms())
            assert result.job is not None

        # 2. SIGKILL the first worker seen holding leases, mid-batch
        deadline = time.monotonic() + 60
        pids = {w.pid: w for w in workers}
        while not (holding := [owner_pid(o) for o in core.store.lease_owners() if owner_pid(o) in pids]):
            assert time.monotonic() < deadline, "no worker claimed a job:\n" + "\n".join(w.logs() for w in workers)
            time.sleep(0.002)
        victim = pids[holding[0]]
        (survivor,) = [w for w in workers if w is not victim]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(30)
        held = [
            j
            for j in core.store.list_jobs(ds.id)
            if j.state is JobState.RUNNING and j.lease_owner is not None and owner_pid(j.lease_owner) == victim.pid
        ]
        assert held, "the victim finished its batch before it died; make the batches longer"
        assert all(j.attempts == 1 for j in held)

        # 3. the survivor finishes the queue, the victim's jobs once their leases have expired
        deadline = time.monotonic() + 180
        while core.store.running_count(ds):
            assert survivor.proc.poll() is None, f"the surviving worker died:\n{survivor.logs()}"
            assert time.monotonic() < deadline, f"the queue did not drain:\n{survivor.logs()}"
            time.sleep(0.1)
        for job in held:
            again = core.store.get_job(job.id)
            assert again is not None and again.state is JobState.DONE and again.attempts == 2, again
            assert again.updated_at >= job.lease_until  # claimed again only after the lease ran out

        # 4. the survivor stops gracefully on SIGTERM
        survivor.proc.send_signal(signal.SIGTERM)
        assert survivor.proc.wait(60) == 0, survivor.logs()
        assert "worker stopped" in survivor.logs()
    finally:
        for w in workers:
            w.close()

    # 5. every document indexed exactly once
    chunker = SectionChunker(load_default_tokenizer(), ds.chunk_size)
    expected_chunks = {doc_id: len(chunker.chunk(Section(None, text, ()))) for doc_id, text in texts.items()}
    assert max(expected_chunks.values()) >= 2 and min(expected_chunks.values()) == 1
    for doc_id in texts:
        info = core.store.document_index_info(ds, doc_id)
        assert info is not None and info.index_state is IndexState.INDEXED and info.index_error is None, doc_id
        assert info.chunk_count == expected_chunks[doc_id], doc_id
    held_ids = {j.id for j in held}
    with psycopg.connect(pg_url) as conn:
        per_doc = dict(
            conn.execute(
                "SELECT d.document_id, count(c.id) FROM documents d LEFT JOIN chunks c ON c.document_pk = d.id "
                "WHERE d.data_source_id = %s GROUP BY 1",
                (ds.id,),
            ).fetchall()
        )
        assert per_doc == expected_chunks
        duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM chunks GROUP BY document_pk, chunk_offset HAVING count(*) > 1) x"
        ).fetchone()
        assert duplicates == (0,)
        texts_found = conn.execute(
            "SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_pk "
            "WHERE c.chunk_offset = 0 AND strpos(c.text, 'qx' || substr(d.document_id, 5)::int || 'zeta') > 0"
        ).fetchone()
        assert texts_found == (N_DOCS,)  # each document's own text, in its first chunk
        stats = conn.execute(
            "SELECT ds.chunk_total = (SELECT count(*) FROM chunks WHERE data_source_id = ds.id), "
            "ds.chunk_length_total = (SELECT coalesce(sum(length), 0) FROM chunks WHERE data_source_id = ds.id) "
            "FROM data_sources ds WHERE ds.id = %s",
            (ds.id,),
        ).fetchone()
        assert stats == (True, True)  # BM25 statistics count each chunk once
        jobs = conn.execute("SELECT id, state, attempts FROM jobs WHERE data_source_id = %s", (ds.id,)).fetchall()
        assert len(jobs) == N_DOCS and {state for _, state, _ in jobs} == {"done"}
        assert {job_id for job_id, _, attempts in jobs if attempts == 2} == held_ids
        assert {attempts for job_id, _, attempts in jobs if job_id not in held_ids} == {1}
