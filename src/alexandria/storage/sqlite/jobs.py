"""Job claiming in the embedded store (the rest of the queue is ``storage/common/queue.py``).

Every queue operation is one ``BEGIN IMMEDIATE`` transaction, so a claim's selection and its update are atomic and
exclusive across threads and processes.
"""

from __future__ import annotations

import sqlite3

from alexandria.domain.jobs import INDEX_DOCUMENT, Job, JobState
from alexandria.domain.models import DataSource
from alexandria.storage.base import DocumentWrite
from alexandria.storage.common.queue import QueueRows
from alexandria.storage.common.queue_rows import JOB_COLS, LIVE, finish_job, job_from_row
from alexandria.storage.database import Conn


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

    def _finish(
        self, conn: sqlite3.Connection, job_id: int, owner: str | None, state: JobState, error: str | None, now: int
    ) -> bool:
        """Legacy: ``queue_rows.finish_job`` for ``storage/sqlite/dify.py``, still on the raw connection."""
        return finish_job(Conn(conn, self.db), job_id, owner, state, error, now)


# --- legacy: for the callers still on a raw connection (storage/sqlite/store.py and dify.py); they move to
# ``storage/common/queue_rows`` (the same functions over the facade), then these go.
def retire_queued(conn: sqlite3.Connection, data_source_id: int, subject: str, now_ms: int) -> int:
    cur = conn.execute(
        "UPDATE jobs SET state = 'done', updated_at = ? "
        f"WHERE data_source_id = ? AND subject = ? AND {LIVE} AND state = 'queued'",
        (now_ms, data_source_id, subject),
    )
    return int(cur.rowcount)


def queue_index_job(conn: sqlite3.Connection, ds: DataSource, doc: DocumentWrite, now_ms: int) -> Job:
    retire_queued(conn, ds.id, doc.document_id, now_ms)
    payload = {"document_id": doc.document_id, "hash": doc.hash}
    row = conn.execute(
        "INSERT INTO jobs (kind, workspace_id, data_source_id, subject, payload, state, attempts, created_at, "
        f"updated_at, run_after) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?) RETURNING {JOB_COLS}",
        (INDEX_DOCUMENT, ds.workspace_id, ds.id, doc.document_id, Job.encode_payload(payload), now_ms, now_ms, now_ms),
    ).fetchone()
    return job_from_row(row)
