"""The job queue service and the in-process worker pool.

Jobs are queued by the services in the same store transaction as the data change they follow (for async upserts:
:meth:`alexandria.services.documents.DocumentService.upsert_async`). Workers claim batches under a lease, run the
handler registered for each job kind, and settle every job: done, retried after a backoff, or (after
``job_max_attempts``, or at once for an invalid job) failed. Handlers must be idempotent: a job may run again after a
crash, since a lease that expires makes it claimable again.

The same claim/lease protocol is meant for separate ``alexandria worker`` processes on the PostgreSQL backend; here
the workers are threads of ``alexandria serve``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence

from alexandria.config import Settings
from alexandria.domain.jobs import Job
from alexandria.domain.models import DataSource
from alexandria.errors import AlexandriaError, InvalidRequest
from alexandria.storage.base import QueueStore

log = logging.getLogger(__name__)

# A handler runs a batch of jobs of its kind and returns, per job in order, None (done: the handler may already have
# marked it done in its own transaction) or the exception that made it fail.
JobHandler = Callable[[Sequence[Job]], Sequence[BaseException | None]]

# Identifies this process's workers in lease owners (``host|pid|token|n``): a lease whose owner is a process of this
# host that is gone (or an earlier process that had our pid) is released at start-up instead of waiting for expiry.
PROCESS_TOKEN = secrets.token_hex(4)
PRUNE_EVERY_S = 600.0


def now_ms() -> int:
    return int(time.time() * 1000)


def owner_id(name: str) -> str:
    return f"{socket.gethostname()}|{os.getpid()}|{PROCESS_TOKEN}|{name}"


def owner_is_dead(owner: str) -> bool:
    """True if ``owner`` is a worker of a process of this host that no longer runs."""
    parts = owner.split("|")
    if len(parts) != 4 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return parts[2] != PROCESS_TOKEN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists but is not ours to signal
        return False
    return False


def error_message(exc: BaseException) -> str:
    if isinstance(exc, AlexandriaError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def is_permanent(exc: BaseException) -> bool:
    """Errors that another attempt cannot fix (the job or its input is invalid)."""
    return isinstance(exc, InvalidRequest)


class JobService:
    def __init__(self, store: QueueStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.handlers: dict[str, JobHandler] = {}
        self.wake = threading.Event()
        self._pool: WorkerPool | None = None

    def register(self, kind: str, handler: JobHandler) -> None:
        self.handlers[kind] = handler

    def notify(self) -> None:
        """Wake idle in-process workers (called after a job was committed)."""
        self.wake.set()

    def running_count(self, ds: DataSource) -> int:
        return self.store.running_count(ds)

    def backoff_ms(self, attempts: int) -> int:
        """Delay before the next attempt after ``attempts`` failed ones: base · 2^(attempts-1), capped."""
        delay = self.settings.job_retry_base_s * (2 ** max(attempts - 1, 0))
        return int(min(delay, self.settings.job_retry_max_s) * 1000)

    def pool(self, workers: int | None = None) -> WorkerPool:
        """A worker pool over this queue (not started: call ``start()``, or drive it with ``run_once()``)."""
        return WorkerPool(self, self.settings.workers if workers is None else workers)

    def start_workers(self, workers: int) -> WorkerPool | None:
        """Start ``workers`` in-process worker threads (none if 0); stopped by :meth:`stop_workers`."""
        if workers <= 0 or self._pool is not None:
            return self._pool
        self._pool = self.pool(workers)
        self._pool.start()
        return self._pool

    def stop_workers(self, timeout: float = 30.0) -> None:
        if self._pool is not None:
            self._pool.stop(timeout)
            self._pool = None


class WorkerPool:
    """Worker threads that claim batches of jobs under a lease, run them and settle them; plus a heartbeat thread
    that renews the leases of jobs in flight. ``run_once()`` and ``drain()`` run batches in the calling thread."""

    def __init__(self, service: JobService, workers: int, clock: Callable[[], int] = now_ms) -> None:
        self.clock = clock  # epoch ms (tests move time by hand)
        self.service = service
        self.store = service.store
        self.settings = service.settings
        self.workers = workers
        self.name = secrets.token_hex(3)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._inflight: dict[str, list[int]] = {}
        self._inflight_lock = threading.Lock()

    @property
    def lease_ms(self) -> int:
        return int(self.settings.job_lease_s * 1000)

    def owner(self, index: int | str) -> str:
        return owner_id(f"{self.name}.{index}")

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        released = self.recover()
        if released:
            log.info("requeued %d jobs of workers that died", released)
        self._stop.clear()
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, args=(i,), name=f"alexandria-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeat, name="alexandria-worker-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs, let the batches in flight finish (up to ``timeout`` seconds), then return."""
        self._stop.set()
        self.service.wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0.0))
            if t.is_alive():
                log.warning("%s still busy at shutdown; its jobs run again once their lease expires", t.name)
        self._threads = []

    def recover(self) -> int:
        """Requeue the jobs leased to workers of dead processes of this host (no need to wait for the lease)."""
        released = 0
        for owner in self.store.lease_owners():
            if owner_is_dead(owner):
                released += self.store.release_leases(owner, self.clock())
        return released

    def _loop(self, index: int) -> None:
        owner = self.owner(index)
        last_prune = 0.0
        while not self._stop.is_set():
            if index == 0 and time.monotonic() - last_prune > PRUNE_EVERY_S:
                last_prune = time.monotonic()
                self._prune()
            try:
                claimed = self.run_once(owner)
            except Exception:
                log.exception("worker %s: claiming or settling jobs failed", owner)
                claimed = 0
            if claimed == 0:
                self.service.wake.wait(self.settings.job_poll_interval_s)
                self.service.wake.clear()

    def _prune(self) -> None:
        try:
            self.store.prune_jobs(self.clock() - int(self.settings.job_retention_h * 3600 * 1000))
        except Exception:
            log.exception("pruning finished jobs failed")

    def _heartbeat(self) -> None:
        interval = max(self.settings.job_lease_s / 3, 0.05)
        while not self._stop.wait(interval):
            with self._inflight_lock:
                held = {owner: list(ids) for owner, ids in self._inflight.items() if ids}
            for owner, ids in held.items():
                try:
                    self.store.extend_leases(owner, ids, self.clock() + self.lease_ms)
                except Exception:
                    log.exception("renewing the leases of %s failed", owner)

    # --- one batch -----------------------------------------------------------------------------------------------
    def run_once(self, owner: str | None = None) -> int:
        """Claim one batch, run it and settle every job; returns the number of jobs claimed (0: nothing ready)."""
        owner = owner or self.owner("inline")
        jobs = self.store.claim_jobs(owner, self.settings.job_batch_size, self.lease_ms, self.clock())
        if not jobs:
            return 0
        with self._inflight_lock:
            self._inflight[owner] = [j.id for j in jobs]
        try:
            by_kind: dict[str, list[Job]] = {}
            for job in jobs:
                if job.attempts > self.settings.job_max_attempts:  # its earlier workers died while running it
                    self._settle(job, owner, RuntimeError(f"gave up after {job.attempts - 1} interrupted attempts"))
                elif job.kind not in self.service.handlers:
                    self._settle(job, owner, InvalidRequest(f"no handler for job kind {job.kind!r}"))
                else:
                    by_kind.setdefault(job.kind, []).append(job)
            for kind, group in by_kind.items():
                outcomes: Sequence[BaseException | None]
                try:
                    outcomes = self.service.handlers[kind](group)
                except Exception as exc:
                    outcomes = [exc] * len(group)
                for job, outcome in zip(group, outcomes, strict=True):
                    self._settle(job, owner, outcome)
        finally:
            with self._inflight_lock:
                self._inflight.pop(owner, None)
        return len(jobs)

    def drain(self, max_batches: int = 10_000) -> int:
        """Run batches in this thread until no job is ready; returns the number of jobs claimed."""
        total = 0
        for _ in range(max_batches):
            claimed = self.run_once()
            if claimed == 0:
                break
            total += claimed
        return total

    def _settle(self, job: Job, owner: str, outcome: BaseException | None) -> None:
        now = self.clock()
        if outcome is None:
            self.store.complete_job(job, owner, now)  # a no-op if the handler marked it done itself
            return
        message = error_message(outcome)
        if is_permanent(outcome) or job.attempts >= self.settings.job_max_attempts:
            log.error("job %d (%s) failed after %d attempts: %s", job.id, job.kind, job.attempts, message)
            self.store.fail_job(job, owner, message, now)
        else:
            delay = self.service.backoff_ms(job.attempts)
            log.warning("job %d (%s) attempt %d failed, retrying in %.1fs: %s", job.id, job.kind, job.attempts,
                        delay / 1000, message)  # fmt: skip
            self.store.retry_job(job, owner, message, now + delay, now)
