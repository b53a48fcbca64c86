"""The SQL pool: SQL over tables runs on threads of its own, never on the server's request threads.

Queries are bounded overall and per workspace: at most ``sql_workers`` run at once (``sql_workers_per_workspace`` of
one workspace), and at most ``sql_queue`` more wait for a worker (``sql_queue_per_workspace`` of one workspace). A
query that finds no room is refused at once (:class:`SqlPoolFull`: Dust's 429 ``rate_limit_error`` with
``Retry-After``) rather than queued without bound. Waiting queries are started round-robin across workspaces, so one
workspace's queue never delays another's turn by more than one query per worker.

A query's time limit counts from its arrival: it ends at ``job.deadline`` whether the query is still waiting (it is
then answered ``query_timeout`` at once and never runs), is being built, or runs (the engines stop it there).

Worker threads lower their own CPU priority (``sql_nice``, Linux only): a runaway query takes only the CPU that
searches and writes leave. An async caller (``run_async``) waits on the event loop, holding no thread; a synchronous
caller (``run``: the CLI, tests) waits on its own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from alexandria.domain.tables import QueryResult
from alexandria.errors import RateLimited, StorageError
from alexandria.services.lanes import lower_thread_priority
from alexandria.tables.errors import QueryFailed


class SqlPoolFull(RateLimited):
    """No room for another SQL query (``sql_queue_full``); ``retry_after``: seconds until a place frees, at the
    latest."""

    code = "sql_queue_full"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)
class SqlJob:
    """One query for the pool: ``run`` does the work; ``deadline`` (``time.monotonic()``) ends its time limit."""

    workspace: int
    run: Callable[[], QueryResult]
    deadline: float
    timeout_ms: int
    future: concurrent.futures.Future[QueryResult] = field(default_factory=concurrent.futures.Future)


@dataclass(frozen=True)
class PoolLimits:
    workers: int = 4
    per_workspace: int = 2
    queue: int = 64
    queue_per_workspace: int = 8
    nice: int = 10


class SqlPool:
    def __init__(self, limits: PoolLimits) -> None:
        self.limits = PoolLimits(
            workers=max(limits.workers, 1),
            per_workspace=max(min(limits.per_workspace, limits.workers), 1),
            queue=max(limits.queue, 0),
            queue_per_workspace=max(limits.queue_per_workspace, 0),
            nice=limits.nice,
        )
        self._cond = threading.Condition()
        self._waiting: OrderedDict[int, deque[SqlJob]] = OrderedDict()  # per workspace, in round-robin order
        self._running: dict[int, set[SqlJob]] = {}
        self._threads: list[threading.Thread] = []
        self._closed = False

    # --- admission -----------------------------------------------------------------------------------------------
    def submit(self, job: SqlJob) -> None:
        """Queue ``job`` (its future gets the answer); raises :class:`SqlPoolFull` at once if there is no room."""
        lim = self.limits
        with self._cond:
            if self._closed:
                raise StorageError("the SQL pool is closed")
            mine = self._pending(job.workspace)
            everyone = [j for ws in set(self._waiting) | set(self._running) for j in self._pending(ws)]
            if len(mine) >= lim.per_workspace + lim.queue_per_workspace:
                raise self._full(f"Too many SQL queries of this workspace are running or waiting ({len(mine)}).", mine)
            if len(everyone) >= lim.workers + lim.queue:
                raise self._full(f"Too many SQL queries are running or waiting ({len(everyone)}).", everyone)
            self._waiting.setdefault(job.workspace, deque()).append(job)
            self._start_threads()
            self._cond.notify()

    def _pending(self, workspace: int) -> list[SqlJob]:
        return [*self._waiting.get(workspace, ()), *self._running.get(workspace, ())]

    @staticmethod
    def _full(message: str, jobs: list[SqlJob]) -> SqlPoolFull:
        # every one of them is answered by its deadline at the latest, freeing its place
        soonest = min((j.deadline for j in jobs), default=time.monotonic()) - time.monotonic()
        retry_after = max(1, math.ceil(soonest))
        return SqlPoolFull(f"{message} Retry after {retry_after} s.", retry_after)

    def _start_threads(self) -> None:
        while len(self._threads) < self.limits.workers:
            t = threading.Thread(target=self._work, name=f"alexandria-sql-{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    def cancel(self, job: SqlJob) -> bool:
        """Withdraw ``job`` if it is still waiting (True); False once a worker has started it (or it is done)."""
        with self._cond:
            queue = self._waiting.get(job.workspace)
            if queue is None or job not in queue:
                return False
            queue.remove(job)
            if not queue:
                del self._waiting[job.workspace]
            job.future.cancel()
            self._cond.notify_all()
            return True

    # --- waiting for the answer ----------------------------------------------------------------------------------
    def run(self, job: SqlJob) -> QueryResult:
        """Submit ``job`` and wait for its answer on this thread."""
        self.submit(job)
        try:
            return job.future.result(timeout=max(job.deadline - time.monotonic(), 0))
        except concurrent.futures.TimeoutError:
            if self.cancel(job):
                raise QueryFailed.timed_out(job.timeout_ms) from None
            return job.future.result()  # running: the engine stops it at the deadline

    async def run_async(self, job: SqlJob) -> QueryResult:
        """Submit ``job`` and wait for its answer on the event loop (no thread is held while it waits or runs)."""
        self.submit(job)
        answer = asyncio.wrap_future(job.future)
        try:
            return await asyncio.wait_for(asyncio.shield(answer), max(job.deadline - time.monotonic(), 0))
        except TimeoutError:
            if self.cancel(job):
                raise QueryFailed.timed_out(job.timeout_ms) from None
            return await answer  # running: the engine stops it at the deadline
        except asyncio.CancelledError:  # the client went away: a query that has not started never will
            self.cancel(job)
            raise

    # --- workers -------------------------------------------------------------------------------------------------
    def _next(self) -> SqlJob | None:
        """The next job to start (under the lock): the first waiting one of the first workspace, in round-robin
        order, that is below its share of workers."""
        for workspace in list(self._waiting):
            if len(self._running.get(workspace, ())) >= self.limits.per_workspace:
                continue
            queue = self._waiting[workspace]
            job = queue.popleft()
            del self._waiting[workspace]
            if queue:
                self._waiting[workspace] = queue  # to the back of the round
            return job
        return None

    def _work(self) -> None:
        lower_thread_priority(self.limits.nice)
        while True:
            with self._cond:
                job = self._next()
                while job is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    job = self._next()
                if not job.future.set_running_or_notify_cancel():
                    continue
                self._running.setdefault(job.workspace, set()).add(job)
            result: QueryResult | None = None
            error: BaseException | None = None
            try:
                if time.monotonic() >= job.deadline:
                    raise QueryFailed.timed_out(job.timeout_ms)
                result = job.run()
            except BaseException as exc:
                error = exc
            # its place is free before anyone hears the answer (a client that sends its next query at once finds it)
            with self._cond:
                running = self._running[job.workspace]
                running.discard(job)
                if not running:
                    del self._running[job.workspace]
                self._cond.notify_all()
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(cast(QueryResult, result))

    def close(self) -> None:
        """Refuse new jobs and stop the workers once the waiting jobs are done (they are answered, not dropped)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def running(self, workspace: int | None = None) -> int:
        with self._cond:
            if workspace is not None:
                return len(self._running.get(workspace, ()))
            return sum(len(s) for s in self._running.values())

    def waiting(self, workspace: int | None = None) -> int:
        with self._cond:
            if workspace is not None:
                return len(self._waiting.get(workspace, ()))
            return sum(len(q) for q in self._waiting.values())
