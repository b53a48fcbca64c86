"""The SQL pool's own rules (``services/sql_pool.py``), with jobs that block on events instead of SQL: bounds per
workspace and overall, round-robin starts, queue full refused at once, the time limit counted from arrival (a job
still waiting at its deadline is answered then and never runs), withdrawal of waiting jobs. Orderings are asserted
through events, never through wall-clock thresholds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from alexandria.domain.tables import QueryResult
from alexandria.services.sql_pool import PoolLimits, SqlJob, SqlPool, SqlPoolFull
from alexandria.tables.errors import QueryFailed

LONG = 60.0  # a deadline no test reaches


class Blocker:
    """Jobs that record when they start and run until released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = threading.Event()
        self._cond = threading.Condition()

    def job(self, name: str, workspace: int, deadline_s: float = LONG, timeout_ms: int = 1000) -> SqlJob:
        def run() -> QueryResult:
            with self._cond:
                self.started.append(name)
                self._cond.notify_all()
            assert self.release.wait(LONG)
            return QueryResult((), [{"job": name}])

        return SqlJob(workspace, run, time.monotonic() + deadline_s, timeout_ms)

    def wait_started(self, n: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.started) >= n, LONG), self.started


@pytest.fixture
def b() -> Iterator[Blocker]:
    blocker = Blocker()
    yield blocker
    blocker.release.set()  # a failed test leaves no thread blocked


@pytest.fixture
def make_pool() -> Iterator[Callable[..., SqlPool]]:
    pools: list[SqlPool] = []

    def make(**limits: int) -> SqlPool:
        pool = SqlPool(PoolLimits(**{"nice": 0, **limits}))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def test_bounds_per_workspace_and_overall_and_round_robin(make_pool: Callable[..., SqlPool], b: Blocker) -> None:
    pool = make_pool(workers=2, per_workspace=1, queue=10, queue_per_workspace=10)
    jobs = [b.job("a1", 1), b.job("a2", 1), b.job("a3", 1), b.job("b1", 2), b.job("c1", 3)]
    for j in jobs:
        pool.submit(j)
    b.wait_started(2)
    # workspace 1 gets one worker, however many it queued first; workspace 2 the other
    assert sorted(b.started) == ["a1", "b1"]
    assert pool.running(1) == 1 and pool.waiting(1) == 2 and pool.running() == 2
    b.release.set()
    for j in jobs:
        assert j.future.result(LONG).rows
    # once a1 and b1 were done, c1 (another workspace) started before a1's queue went on: round robin
    assert b.started.index("c1") < b.started.index("a3")


def test_queue_full_is_refused_at_once(make_pool: Callable[..., SqlPool], b: Blocker) -> None:
    pool = make_pool(workers=2, per_workspace=1, queue=3, queue_per_workspace=1)
    running = b.job("a1", 1, deadline_s=7.5)
    waiting = b.job("a2", 1)
    pool.submit(running)
    pool.submit(waiting)
    b.wait_started(1)
    with pytest.raises(SqlPoolFull) as info:
        pool.submit(b.job("a3", 1))
    # answered while the others still run or wait; Retry-After: when a place frees at the latest (a1's deadline)
    assert not running.future.done() and not waiting.future.done()
    assert info.value.code == "sql_queue_full" and 1 <= info.value.retry_after <= 8
    assert "Retry after" in info.value.message
    # another workspace still has room, up to the overall bound (2 workers + 3 waiting)
    pool.submit(b.job("b1", 2))
    pool.submit(b.job("b2", 2))
    pool.submit(b.job("c1", 3))
    with pytest.raises(SqlPoolFull, match="Too many SQL queries are running or waiting"):
        pool.submit(b.job("d1", 4))
    b.release.set()
    assert running.future.result(LONG).rows == [{"job": "a1"}]


def test_time_limit_counts_from_arrival(make_pool: Callable[..., SqlPool], b: Blocker) -> None:
    """A job still waiting for a worker at its deadline is answered query_timeout then, and never runs."""
    pool = make_pool(workers=1, per_workspace=1)
    runaway = b.job("runaway", 1)
    pool.submit(runaway)
    b.wait_started(1)
    late = b.job("late", 1, deadline_s=0.2, timeout_ms=200)
    with pytest.raises(QueryFailed) as info:
        pool.run(late)
    assert info.value.code == "query_timeout"
    assert info.value.message == "Query execution timed out after 200 ms."
    assert not runaway.future.done()  # answered while the job ahead of it still held the only worker
    assert pool.waiting() == 0  # withdrawn
    b.release.set()
    runaway.future.result(LONG)
    pool.close()
    assert b.started == ["runaway"]  # the late job never ran


def test_time_limit_counts_from_arrival_async(make_pool: Callable[..., SqlPool], b: Blocker) -> None:
    pool = make_pool(workers=1, per_workspace=1)
    runaway = b.job("runaway", 1)
    pool.submit(runaway)
    b.wait_started(1)
    late = b.job("late", 1, deadline_s=0.2, timeout_ms=200)
    with pytest.raises(QueryFailed) as info:
        asyncio.run(pool.run_async(late))
    assert info.value.code == "query_timeout" and not runaway.future.done()
    b.release.set()
    assert asyncio.run(pool.run_async(b.job("next", 1))).rows == [{"job": "next"}]


def test_an_expired_job_is_not_run(make_pool: Callable[..., SqlPool]) -> None:
    pool = make_pool(workers=1, per_workspace=1)
    ran = threading.Event()
    job = SqlJob(1, lambda: (ran.set(), QueryResult(()))[1], time.monotonic() - 1, 5)
    pool.submit(job)
    with pytest.raises(QueryFailed, match="timed out after 5 ms"):
        job.future.result(LONG)
    assert not ran.is_set()


def test_errors_reach_the_caller(make_pool: Callable[..., SqlPool]) -> None:
    pool = make_pool(workers=1, per_workspace=1)

    def fail() -> QueryResult:
        raise QueryFailed.execution("boom")

    with pytest.raises(QueryFailed, match="boom"):
        pool.run(SqlJob(1, fail, time.monotonic() + LONG, 1000))
    assert pool.running() == 0 and pool.waiting() == 0


def test_per_workspace_is_at_most_the_workers() -> None:
    pool = SqlPool(PoolLimits(workers=2, per_workspace=5, queue=0, queue_per_workspace=0, nice=0))
    assert pool.limits.per_workspace == 2
    pool.close()


def test_a_place_is_free_before_the_answer_is_given(make_pool: Callable[..., SqlPool]) -> None:
    """A client that sends its next query as soon as it has an answer finds its place free (no spurious 429)."""
    pool = make_pool(workers=1, per_workspace=1, queue=0, queue_per_workspace=0)
    seen: list[int] = []
    job = SqlJob(1, lambda: QueryResult(()), time.monotonic() + LONG, 1000)
    job.future.add_done_callback(lambda _: seen.append(pool.running(1) + pool.waiting(1)))
    pool.run(job)
    assert seen == [0]
    pool.run(SqlJob(1, lambda: QueryResult(()), time.monotonic() + LONG, 1000))  # not refused
