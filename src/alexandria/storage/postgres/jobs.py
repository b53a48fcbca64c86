"""Job claiming in the scale-out store (the rest of the queue is ``storage/common/queue.py``): one
``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`` under a lease, so any number of worker processes
share one queue. Concurrent claimers skip each other's rows instead of waiting, and a row that changed since the
statement's snapshot is re-checked once locked."""

from __future__ import annotations

from alexandria.domain.jobs import Job
from alexandria.storage.common.queue import QueueRows
from alexandria.storage.common.queue_rows import JOB_COLS, job_from_row

# A job is ready when it is queued and its ``run_after`` has come, or running with an expired lease (its worker died).
READY = "(state = 'running' AND lease_until <= ?) OR (state = 'queued' AND run_after <= ?)"


class PgJobs(QueueRows):
    """Queue half of :class:`PostgresStore`. The document-changing transactions lock the document row
    (``FOR UPDATE``) before they compare its hash and index state, so an index job and a newer upsert of the same
    document are serialized."""

    def claim_jobs(self, owner: str, limit: int, lease_ms: int, now_ms: int) -> list[Job]:
        """Atomically lease up to ``limit`` ready jobs to ``owner`` until ``now_ms + lease_ms``: running jobs whose
        lease expired first (by expiry), then queued jobs whose ``run_after`` has come. Bumps ``attempts``."""
        if limit <= 0:
            return []
        with self.db.write() as conn:
            got = conn.all(
                "UPDATE jobs SET state = 'running', lease_owner = ?, lease_until = ?, attempts = attempts + 1, "
                f"updated_at = ? WHERE id IN (SELECT id FROM jobs WHERE {READY} "
                "ORDER BY (state = 'running') DESC, "
                "CASE WHEN state = 'running' THEN lease_until ELSE run_after END, id "
                f"LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING {JOB_COLS}",
                (owner, now_ms + lease_ms, now_ms, now_ms, now_ms, limit),
            )
        return sorted((job_from_row(r) for r in got), key=lambda j: j.id)
