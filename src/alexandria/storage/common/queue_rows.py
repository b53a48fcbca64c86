"""The queue's rows, written once: enqueueing inside the caller's transaction (so a job commits or rolls back with
the data change it follows), retiring obsolete jobs, settling a job. Claiming is per engine (``claim_jobs``)."""

from __future__ import annotations

from typing import Any

from alexandria.domain.jobs import INDEX_DOCUMENT, Job, JobState, index_job_obsolete
from alexandria.domain.models import DataSource
from alexandria.storage import rows
from alexandria.storage.base import DocumentWrite
from alexandria.storage.database import Conn, Row
from alexandria.storage.errors import missing_row

JOB_COLS = (
    "id, kind, workspace_id, data_source_id, subject, payload, state, attempts, error, run_after, lease_owner, "
    "lease_until, created_at, updated_at"
)
LIVE = "state IN ('queued', 'running')"  # as written in the partial index jobs_live_by_subject


def job_from_row(row: Row) -> Job:
    return Job(
        id=int(row[0]),
        kind=str(row[1]),
        workspace_id=int(row[2]),
        data_source_id=None if row[3] is None else int(row[3]),
        subject=None if row[4] is None else str(row[4]),
        payload=dict(rows.js(row[5], {})),
        state=JobState(str(row[6])),
        attempts=int(row[7]),
        error=None if row[8] is None else str(row[8]),
        run_after=int(row[9]),
        lease_owner=None if row[10] is None else str(row[10]),
        lease_until=int(row[11]),
        created_at=int(row[12]),
        updated_at=int(row[13]),
    )


def enqueue(
    conn: Conn,
    kind: str,
    workspace_id: int,
    data_source_id: int | None,
    subject: str | None,
    payload: dict[str, Any],
    now_ms: int,
) -> Job:
    """Queue a job inside the caller's open write transaction (so it commits or rolls back with the data change)."""
    row = conn.one(
        "INSERT INTO jobs (kind, workspace_id, data_source_id, subject, payload, state, attempts, created_at, "
        f"updated_at, run_after) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?) RETURNING {JOB_COLS}",
        (kind, workspace_id, data_source_id, subject, Job.encode_payload(payload), now_ms, now_ms, now_ms),
    )
    return job_from_row(missing_row(row))


def retire_queued(conn: Conn, data_source_id: int, subject: str, now_ms: int) -> int:
    """Mark done the queued (not yet claimed) jobs about ``subject``: a newer change or a delete made them obsolete.
    Running jobs are left to their worker, whose final transaction finds them obsolete."""
    cur = conn.execute(
        "UPDATE jobs SET state = 'done', updated_at = ? "
        f"WHERE data_source_id = ? AND subject = ? AND {LIVE} AND state = 'queued'",
        (now_ms, data_source_id, subject),
    )
    return int(cur.rowcount)


def queue_index_job(conn: Conn, ds: DataSource, doc: DocumentWrite, now_ms: int, kind: str = INDEX_DOCUMENT) -> Job:
    """Retire the queued jobs of older versions of ``doc`` and queue the index job of this one (in the caller's
    transaction, with the document change)."""
    retire_queued(conn, ds.id, doc.document_id, now_ms)
    payload = {"document_id": doc.document_id, "hash": doc.hash}
    return enqueue(conn, kind, ds.workspace_id, ds.id, doc.document_id, payload, now_ms)


def finish_job(conn: Conn, job_id: int, owner: str | None, state: JobState, error: str | None, now_ms: int) -> bool:
    """Settle a job: as ``owner`` (who must still hold it), or, with no owner, whoever holds it if it is live."""
    sql = "UPDATE jobs SET state = ?, error = ?, lease_owner = NULL, updated_at = ? WHERE id = ?"
    params: list[object] = [state.value, error, now_ms, job_id]
    if owner is None:
        sql += f" AND {LIVE}"
    else:
        sql += " AND state = 'running' AND lease_owner = ?"
        params.append(owner)
    return int(conn.execute(sql, params).rowcount) > 0


def index_target(conn: Conn, data_source_id: int, job: Job, columns: str = "id, hash, index_state") -> Row | None:
    """The row (``columns``, starting with ``id, hash, index_state``) of the document an index job indexes, locked
    until the transaction ends; None when the job is obsolete (:func:`~alexandria.domain.jobs.index_job_obsolete`).
    Index jobs settle their job row first, then call this (the job, then its document: one lock order)."""
    found = conn.one(
        f"SELECT {columns} FROM documents WHERE data_source_id = ? AND document_id = ?{conn.dialect.for_update}",
        (data_source_id, job.payload_str("document_id")),
    )
    return None if index_job_obsolete(job, None if found is None else (str(found[1]), str(found[2]))) else found
