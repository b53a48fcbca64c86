"""Job claiming in the scale-out store (the rest of the queue is ``storage/common/queue.py``): one
``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`` under a lease, so any number of worker processes
share one queue. Concurrent claimers skip each other's rows instead of waiting, and a row that changed since the
statement's snapshot is re-checked once locked."""

from __future__ import annotations

import json

import psycopg

from alexandria.domain.jobs import INDEX_DOCUMENT, Job
from alexandria.domain.models import DataSource
from alexandria.storage.base import DocumentWrite
from alexandria.storage.common.queue import QueueRows
from alexandria.storage.common.queue_rows import JOB_COLS, LIVE, job_from_row

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


# --- legacy: for the callers still on a raw connection (storage/postgres/core.py and dify.py); they move to
# ``storage/common/queue_rows`` (the same functions over the facade), then these go.
def retire_queued(conn: psycopg.Connection, data_source_id: int, subject: str, now_ms: int) -> int:
    cur = conn.execute(
        "UPDATE jobs SET state = 'done', updated_at = %s "
        f"WHERE data_source_id = %s AND subject = %s AND {LIVE} AND state = 'queued'",
        (now_ms, data_source_id, subject),
    )
    return int(cur.rowcount)


def queue_index_job(conn: psycopg.Connection, ds: DataSource, doc: DocumentWrite, now_ms: int) -> Job:
    retire_queued(conn, ds.id, doc.document_id, now_ms)
    payload = {"document_id": doc.document_id, "hash": doc.hash}
    row = conn.execute(
        "INSERT INTO jobs (kind, workspace_id, data_source_id, subject, payload, state, attempts, created_at, "
        f"updated_at, run_after) VALUES (%s, %s, %s, %s, %s, 'queued', 0, %s, %s, %s) RETURNING {JOB_COLS}",
        (INDEX_DOCUMENT, ds.workspace_id, ds.id, doc.document_id, json.dumps(payload), now_ms, now_ms, now_ms),
    ).fetchone()
    assert row is not None
    return job_from_row(row)
