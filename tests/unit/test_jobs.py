"""The durable job queue and the async-upsert indexing, on both backends: claims, leases, retries, obsolete jobs."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from alexandria.config import Settings
from alexandria.domain.jobs import INDEX_DOCUMENT, IndexState, Job, JobState
from alexandria.domain.models import DataSource, Document
from alexandria.errors import EmbeddingFailed
from alexandria.ingest.base import Vectors
from alexandria.ingest.chunkers import Section
from alexandria.services import jobs as jobs_module
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest
from alexandria.services.jobs import WorkerPool, owner_id, owner_is_dead
from alexandria.storage.base import Store, StoredChunk
from alexandria.storage.common.queue_rows import enqueue
from alexandria.storage.postgres.store import PostgresStore
from alexandria.storage.sqlite.store import SqliteStore
from tests.fakes import HashingEmbedder

pytestmark = [pytest.mark.backends("sqlite", "postgres")]

T0 = 1_800_000_000_000


class FlakyEmbedder(HashingEmbedder):
    """Fails while ``failures_left`` > 0, and always on texts containing ``poison``."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures_left = failures

    def embed(self, texts: Sequence[str]) -> Vectors:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise EmbeddingFailed("the embedding service is down")
        if any("poison" in t for t in texts):
            raise EmbeddingFailed("cannot embed poison")
        return super().embed(texts)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The backend's settings (conftest), with a short retry schedule."""
    return settings.model_copy(
        update={"job_max_attempts": 3, "job_retry_base_s": 10, "job_retry_max_s": 15, "job_batch_size": 8}
    )


@pytest.fixture
def flaky() -> FlakyEmbedder:
    return FlakyEmbedder()


@pytest.fixture
def jcore(settings: Settings, flaky: FlakyEmbedder) -> Iterator[Core]:
    c = Core(settings)
    c.embedders.register("fake", flaky)
    yield c
    c.close()


@pytest.fixture
def ds(jcore: Core) -> DataSource:
    ws, _ = jcore.catalog.ensure_workspace("w1")
    return jcore.catalog.create_data_source(ws, "docs", embedder="fake")


@pytest.fixture
def store(jcore: Core, backend: str) -> Store:
    assert isinstance(jcore.store, PostgresStore if backend == "postgres" else SqliteStore)
    return jcore.store


@pytest.fixture
def pool(jcore: Core) -> WorkerPool:
    p = jcore.jobs.pool()
    p.clock = Clock()
    return p


def req(doc_id: str, text: str, **kw: object) -> UpsertRequest:
    return UpsertRequest(doc_id, Section(None, text, ()), **kw)  # type: ignore[arg-type]


def queue(store: Store, ds: DataSource, n: int, kind: str = "test") -> list[int]:
    """Queue ``n`` jobs of ``kind`` (the Store protocol has no bare enqueue: the shared row helper, over the facade)."""
    assert isinstance(store, SqliteStore | PostgresStore)
    with store.db.write() as conn:
        return [enqueue(conn, kind, ds.workspace_id, ds.id, None, {"n": i}, T0).id for i in range(n)]


def documents(store: Store, ds: DataSource) -> list[Document]:
    return store.list_documents(ds, None, 10_000, 0)[0]


def chunks(store: Store, ds: DataSource) -> list[StoredChunk]:
    return store.chunks_of_documents(sorted(d.pk for d in documents(store, ds)))


def chunk_rows(store: Store, ds: DataSource) -> list[tuple[int, int]]:
    return sorted((c.document_pk, c.offset) for c in chunks(store, ds))


# --- the queue ---------------------------------------------------------------------------------------------------
def test_claim_is_atomic_and_exclusive_across_threads(store: Store, ds: DataSource) -> None:
    ids = queue(store, ds, 300)
    claimed: list[list[int]] = [[] for _ in range(6)]
    start = threading.Barrier(6)

    def worker(i: int) -> None:
        start.wait()
        while got := store.claim_jobs(f"owner-{i}", 7, 60_000, T0):
            assert all(j.state is JobState.RUNNING and j.lease_owner == f"owner-{i}" for j in got)
            claimed[i] += [j.id for j in got]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for part in claimed for i in part]
    assert sorted(everything) == ids  # every job claimed exactly once
    assert sum(1 for part in claimed if part) > 1
    assert store.running_count(ds) == 300
    assert {store.get_job(i).attempts for i in ids} == {1}  # type: ignore[union-attr]


def test_claim_order_readiness_and_limit(store: Store, ds: DataSource) -> None:
    ids = queue(store, ds, 5)
    assert store.claim_jobs("a", 0, 1000, T0) == []
    assert store.claim_jobs("a", 2, 1000, T0 - 1) == []  # run_after not reached yet
    assert [j.id for j in store.claim_jobs("a", 2, 1000, T0)] == ids[:2]
    assert [j.id for j in store.claim_jobs("b", 10, 1000, T0)] == ids[2:]
    assert store.claim_jobs("c", 10, 1000, T0) == []


def test_expired_leases_are_claimed_again_and_heartbeats_keep_them(store: Store, ds: DataSource) -> None:
    a, b = queue(store, ds, 2)
    got = store.claim_jobs("dead", 5, 1000, T0)
    assert [j.lease_until for j in got] == [T0 + 1000, T0 + 1000]
    assert store.extend_leases("dead", [b], T0 + 5000) == 1  # the heartbeat of a live worker
    assert store.extend_leases("someone-else", [a], T0 + 9000) == 0
    assert store.claim_jobs("new", 5, 1000, T0 + 999) == []
    (again,) = store.claim_jobs("new", 5, 1000, T0 + 1000)  # a's lease ran out; b's was extended
    assert again.id == a and again.attempts == 2 and again.lease_owner == "new"
    # the worker that lost the lease can no longer settle the job, nor extend it
    assert not store.complete_job(got[0], "dead", T0 + 1001)
    assert not store.retry_job(got[0], "dead", "x", T0, T0 + 1001)
    assert not store.fail_job(got[0], "dead", "x", T0 + 1001)
    assert store.extend_leases("dead", [a], T0 + 9000) == 0
    assert store.complete_job(again, "new", T0 + 1002)
    assert store.get_job(a).state is JobState.DONE  # type: ignore[union-attr]
    assert store.claim_jobs("new", 5, 1000, T0 + 5000)[0].id == b


def test_release_and_dead_owner_detection(store: Store, ds: DataSource, pool: WorkerPool) -> None:
    queue(store, ds, 3)
    host = socket.gethostname()
    dead = f"{host}|999999999|cafe|0"  # no such pid
    earlier_me = f"{host}|{os.getpid()}|not-{jobs_module.PROCESS_TOKEN}|0"  # an earlier process that had our pid
    alive = owner_id("x")
    other_host = f"not-{host}|1|cafe|0"
    assert owner_is_dead(dead) and owner_is_dead(earlier_me)
    assert not owner_is_dead(alive) and not owner_is_dead(other_host) and not owner_is_dead("garbage")
    for owner in (dead, earlier_me, alive):
        store.claim_jobs(owner, 1, 3_600_000, T0)
    assert store.lease_owners() == sorted([dead, earlier_me, alive])
    assert pool.recover() == 2
    assert store.lease_owners() == [alive]
    again = store.claim_jobs("next", 5, 1000, T0)
    assert len(again) == 2 and {j.attempts for j in again} == {2}


def test_retries_with_backoff_then_failed(jcore: Core, store: Store, ds: DataSource, pool: WorkerPool) -> None:
    calls: list[int] = []

    def broken(jobs: Sequence[Job]) -> list[BaseException | None]:
        calls.append(len(jobs))
        return [RuntimeError("boom")] * len(jobs)

    jcore.jobs.register("broken", broken)
    (job_id,) = queue(store, ds, 1, kind="broken")
    clock = pool.clock
    assert isinstance(clock, Clock)
    assert pool.run_once() == 1
    job = store.get_job(job_id)
    assert job is not None and job.state is JobState.QUEUED and job.error == "RuntimeError: boom"
    assert job.run_after == T0 + 10_000 and job.attempts == 1 and job.lease_owner is None
    assert store.running_count(ds) == 1  # waiting for its retry still counts
    clock.now = T0 + 9_999
    assert pool.run_once() == 0
    clock.now = T0 + 10_000
    assert pool.run_once() == 1
    job = store.get_job(job_id)
    assert job is not None and job.run_after == T0 + 10_000 + 15_000  # 20 s, capped at 15 s
    clock.now = job.run_after
    assert pool.run_once() == 1
    job = store.get_job(job_id)
    assert job is not None and job.state is JobState.FAILED and job.attempts == 3 and job.error == "RuntimeError: boom"
    assert store.running_count(ds) == 0 and calls == [1, 1, 1]
    clock.now += 10**9
    assert pool.run_once() == 0


def test_unknown_kind_and_crash_looping_jobs_fail(store: Store, ds: DataSource, pool: WorkerPool) -> None:
    (unknown,) = queue(store, ds, 1, kind="nobody-handles-this")
    assert pool.run_once() == 1
    job = store.get_job(unknown)
    assert job is not None and job.state is JobState.FAILED and "no handler" in (job.error or "")
    (looping,) = queue(store, ds, 1, kind=INDEX_DOCUMENT)
    for i in range(3):  # three workers died holding it
        assert len(store.claim_jobs(f"dead-{i}", 1, 1, T0 + i * 10)) == 1
    clock = pool.clock
    assert isinstance(clock, Clock)
    clock.now = T0 + 100
    assert pool.run_once() == 1
    job = store.get_job(looping)
    assert job is not None and job.state is JobState.FAILED and "interrupted" in (job.error or "")


def test_prune_finished_jobs(store: Store, ds: DataSource) -> None:
    *_, last = queue(store, ds, 3)
    for job in store.claim_jobs("o", 2, 1000, T0):
        store.complete_job(job, "o", T0 + 5)
    assert store.prune_jobs(T0 + 5) == 0
    assert store.prune_jobs(T0 + 6) == 2
    assert [j.id for j in store.list_jobs(ds.id)] == [last]


# --- async upserts -----------------------------------------------------------------------------------------------
def test_async_upsert_is_pending_until_a_worker_indexes_it(
    jcore: Core, store: Store, ds: DataSource, pool: WorkerPool, flaky: FlakyEmbedder
) -> None:
    text = " ".join(f"word{i}" for i in range(80))
    result = jcore.documents.upsert_async(ds, req("d1", text, tags=("t",)), T0)
    assert result.job is not None and result.job.payload == {"document_id": "d1", "hash": result.document.hash}
    assert flaky.calls == []  # nothing embedded on the request path
    info = store.document_index_info(ds, "d1")
    assert info is not None and info.index_state is IndexState.PENDING and info.chunk_count == 0
    assert store.document_hash(ds, "d1") is None  # not indexed yet: a sync upsert of it would do the work
    assert jcore.documents.get(ds, "d1").text == text  # type: ignore[union-attr]
    assert store.running_count(ds) == 1
    # the same version again queues nothing more
    assert jcore.documents.upsert_async(ds, req("d1", text, tags=("t",)), T0).job is None
    assert store.running_count(ds) == 1
    assert pool.drain() == 1
    info = store.document_index_info(ds, "d1")
    assert info is not None and info.index_state is IndexState.INDEXED and info.chunk_count == 3
    assert len(chunk_rows(store, ds)) == 3 and store.running_count(ds) == 0
    assert jcore.documents.upsert_async(ds, req("d1", text, tags=("t",)), T0).job is None  # identical: no-op
    # a new version reuses the vectors of unchanged chunks
    flaky.calls.clear()
    jcore.documents.upsert_async(ds, req("d1", text + " tail"), T0)
    pool.drain()
    assert flaky.calls == [1]


def test_batch_embeds_documents_together(
    jcore: Core, store: Store, ds: DataSource, pool: WorkerPool, flaky: FlakyEmbedder
) -> None:
    for i in range(5):
        jcore.documents.upsert_async(ds, req(f"d{i}", f"document number {i}"), T0)
    assert pool.run_once() == 5
    assert flaky.calls == [5]
    assert store.running_count(ds) == 0


def test_obsolete_jobs_do_no_work(
    jcore: Core, store: Store, ds: DataSource, pool: WorkerPool, flaky: FlakyEmbedder
) -> None:
    first = jcore.documents.upsert_async(ds, req("d", "first version alpha"), T0).job
    index = jcore.jobs.handlers[INDEX_DOCUMENT]
    seconds = []

    def racing(jobs: Sequence[Job]) -> Sequence[BaseException | None]:  # v2 arrives while a worker holds v1
        seconds.append(jcore.documents.upsert_async(ds, req("d", "second version beta"), T0))
        return index(jobs)

    jcore.jobs.register(INDEX_DOCUMENT, racing)
    assert pool.run_once() == 1
    jcore.jobs.register(INDEX_DOCUMENT, index)
    assert flaky.calls == []  # superseded: no embedding, no chunks
    assert chunk_rows(store, ds) == []
    assert first is not None and store.get_job(first.id).state is JobState.DONE  # type: ignore[union-attr]
    second = seconds[0]
    assert second.job is not None and store.running_count(ds) == 1
    assert pool.drain() == 1
    assert [c.text for c in chunks(store, ds)] == ["second version beta"]
    # re-running a finished job (as after a crash between commit and acknowledgement) changes nothing
    assert jcore.documents.run_index_jobs([second.job]) == [None]
    assert len(chunk_rows(store, ds)) == 1 and flaky.calls == [1]


def test_queued_jobs_are_retired_by_newer_upserts_and_deletes(jcore: Core, store: Store, ds: DataSource) -> None:
    first = jcore.documents.upsert_async(ds, req("d", "one"), T0).job
    second = jcore.documents.upsert_async(ds, req("d", "two"), T0).job
    assert first is not None and second is not None
    assert store.get_job(first.id).state is JobState.DONE  # type: ignore[union-attr]
    assert store.running_count(ds) == 1
    jcore.documents.upsert(ds, req("d", "three"), T0)  # a synchronous upsert supersedes the queued one
    assert store.get_job(second.id).state is JobState.DONE  # type: ignore[union-attr]
    info = store.document_index_info(ds, "d")
    assert info is not None and info.index_state is IndexState.INDEXED
    third = jcore.documents.upsert_async(ds, req("d", "four"), T0).job
    assert third is not None and jcore.documents.delete(ds, "d")
    assert store.get_job(third.id).state is JobState.DONE  # type: ignore[union-attr]
    assert store.running_count(ds) == 0


def test_sync_upsert_of_pending_content_indexes_it(jcore: Core, store: Store, ds: DataSource, pool: WorkerPool) -> None:
    jcore.documents.upsert_async(ds, req("d", "same content"), T0)
    (claimed,) = store.claim_jobs("w", 1, 60_000, T0)
    result = jcore.documents.upsert(ds, req("d", "same content"), T0)
    assert result.changed and result.document.chunk_count == 1
    assert jcore.documents.run_index_jobs([claimed]) == [None]  # already indexed: nothing to do
    assert len(chunk_rows(store, ds)) == 1


def test_worker_crash_mid_job_is_recovered_without_duplicates(
    jcore: Core, store: Store, ds: DataSource, pool: WorkerPool
) -> None:
    for i in range(4):
        jcore.documents.upsert_async(ds, req(f"d{i}", " ".join(f"w{i}x{j}" for j in range(70))), T0)
    assert len(store.claim_jobs("crashed", 2, 1000, T0)) == 2  # this worker dies holding two jobs
    clock = pool.clock
    assert isinstance(clock, Clock)
    assert pool.drain() == 2
    assert store.running_count(ds) == 2
    clock.now = T0 + 1000
    assert pool.drain() == 2
    assert store.running_count(ds) == 0
    rows = chunk_rows(store, ds)
    assert len(rows) == len(set(rows)) == 4 * 3
    assert {store.get_job(j.id).attempts for j in store.list_jobs(ds.id)} == {1, 2}  # type: ignore[union-attr]


def test_failed_embedding_ends_failed_with_the_message(
    jcore: Core, store: Store, ds: DataSource, pool: WorkerPool, flaky: FlakyEmbedder
) -> None:
    jcore.documents.upsert_async(ds, req("bad", "some poison text"), T0)
    clock = pool.clock
    assert isinstance(clock, Clock)
    for _ in range(3):
        info = store.document_index_info(ds, "bad")
        assert info is not None and info.index_state is IndexState.PENDING
        assert pool.run_once() == 1
        clock.now += 60_000
    info = store.document_index_info(ds, "bad")
    assert info is not None and info.index_state is IndexState.FAILED
    assert info.index_error == "cannot embed poison"
    (job,) = store.list_jobs(ds.id)
    assert job.state is JobState.FAILED and job.error == "cannot embed poison" and job.attempts == 3
    assert store.running_count(ds) == 0
    # upserting it again (fixed) indexes it
    jcore.documents.upsert_async(ds, req("bad", "some good text"), T0)
    pool.drain()
    info = store.document_index_info(ds, "bad")
    assert info is not None and info.index_state is IndexState.INDEXED and info.index_error is None


def test_a_poisoned_document_does_not_fail_its_batch(
    jcore: Core, store: Store, ds: DataSource, pool: WorkerPool
) -> None:
    jcore.documents.upsert_async(ds, req("a", "fine text a"), T0)
    jcore.documents.upsert_async(ds, req("p", "poison text"), T0)
    jcore.documents.upsert_async(ds, req("b", "fine text b"), T0)
    assert pool.run_once() == 3
    states = {d: store.document_index_info(ds, d).index_state for d in "apb"}  # type: ignore[union-attr]
    assert states == {"a": IndexState.INDEXED, "p": IndexState.PENDING, "b": IndexState.INDEXED}
    assert store.running_count(ds) == 1


def test_transient_failure_is_retried_and_succeeds(
    jcore: Core, store: Store, ds: DataSource, pool: WorkerPool, flaky: FlakyEmbedder
) -> None:
    flaky.failures_left = 1
    jcore.documents.upsert_async(ds, req("d", "hello there"), T0)
    assert pool.run_once() == 1
    (job,) = store.list_jobs(ds.id)
    assert job.state is JobState.QUEUED and job.error == "the embedding service is down"
    clock = pool.clock
    assert isinstance(clock, Clock)
    clock.now = job.run_after
    assert pool.run_once() == 1
    info = store.document_index_info(ds, "d")
    assert info is not None and info.index_state is IndexState.INDEXED
    assert store.list_jobs(ds.id)[0].state is JobState.DONE


def test_worker_threads_drain_the_queue_and_stop(jcore: Core, store: Store, ds: DataSource) -> None:
    pool = jcore.jobs.start_workers(2)
    assert pool is not None
    try:
        for i in range(40):
            jcore.documents.upsert_async(ds, req(f"d{i}", f"threaded document {i}"), int(time.time() * 1000))
        deadline = time.monotonic() + 20
        while store.running_count(ds) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.running_count(ds) == 0
    finally:
        jcore.jobs.stop_workers()
    assert all(not t.is_alive() for t in threading.enumerate() if t.name.startswith("alexandria-worker"))
    assert len(chunk_rows(store, ds)) == 40
    assert [d.index_state for d in documents(store, ds)] == ["indexed"] * 40


def test_backoff_is_exponential_and_capped(jcore: Core) -> None:
    assert [jcore.jobs.backoff_ms(a) for a in (1, 2, 3)] == [10_000, 15_000, 15_000]
