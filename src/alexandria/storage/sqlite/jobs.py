"""Job claiming in the embedded store (the rest of the queue is ``storage/common/queue.py``).

Every queue operation is one ``BEGIN IMMEDIATE`` transaction, so a claim's selection and its update are atomic and
exclusive across threads and processes.
"""

from __future__ import annotations

from alexandria.domain.jobs import Job
from alexandria.storage.common.queue import QueueRows
from alexandria.storage.common.queue_rows import JOB_COLS, job_from_row


class SqliteJobs(QueueRows):
    """Queue half of :class:`SqliteStore`."""

    def claim_jobs(self, owner: str, limit: int, lease_ms: int, now_ms: int) -> list[Job]:
        """Atomically lease up to ``limit`` ready jobs to ``owner`` until ``now_ms + lease_ms``: running jobs whose
        lease expired (their worker died) first, then queued jobs whose ``run_after`` has come. Bumps ``attempts``."""
        if limit <= 0:
            return []
        with self.db.write() as conn:
            ids = [
                int(r[0])
                for r in conn.all(
                    "SELECT id FROM jobs WHERE state = 'running' AND lease_until <= ? ORDER BY lease_until, id LIMIT ?",
                    (now_ms, limit),
                )
            ]
            if len(ids) < limit:
                ids += [
                    int(r[0])
                    for r in conn.all(
                        "SELECT id FROM jobs WHERE state = 'queued' AND run_after <= ? ORDER BY run_after, id LIMIT ?",
                        (now_ms, limit - len(ids)),
                    )
                ]
            if not ids:
                return []
            got = conn.all(
                "UPDATE jobs SET state = 'running', lease_owner = ?, lease_until = ?, attempts = attempts + 1, "
                f"updated_at = ? WHERE {conn.dialect.any_of('id')} RETURNING {JOB_COLS}",
                (owner, now_ms + lease_ms, now_ms, conn.dialect.seq(ids)),
            )
        return sorted((job_from_row(r) for r in got), key=lambda j: j.id)
