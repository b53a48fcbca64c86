"""The durable job queue on PostgreSQL (the helpers the other mixins share; the queue mixin ``PgJobs`` follows).

Jobs are enqueued inside the transaction of the data change they follow; workers claim them with
``FOR UPDATE SKIP LOCKED`` under a lease, so any number of worker processes share one queue."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from alexandria.domain.jobs import INDEX_DOCUMENT, DocumentIndexInfo, IndexState, Job, JobState
from alexandria.domain.models import DataSource, Document
from alexandria.ingest.base import Vectors
from alexandria.storage import rows
from alexandria.storage.base import ChunkWrite, DocumentWrite
from alexandria.storage.postgres.db import PgEngine

JOB_COLS = (
    "id, kind, workspace_id, data_source_id, subject, payload, state, attempts, error, run_after, lease_owner, "
    "lease_until, created_at, updated_at"
)
LIVE = "state IN ('queued', 'running')"  # as written in the partial index jobs_live_by_subject


def job_from_row(row: tuple[Any, ...]) -> Job:
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
    conn: psycopg.Connection,
    kind: str,
    workspace_id: int,
    data_source_id: int | None,
    subject: str | None,
    payload: dict[str, Any],
    now_ms: int,
) -> Job:
    """Queue a job inside the caller's open transaction (so it commits or rolls back with the data change)."""
    row = conn.execute(
        "INSERT INTO jobs (kind, workspace_id, data_source_id, subject, payload, state, attempts, created_at, "
        f"updated_at, run_after) VALUES (%s, %s, %s, %s, %s, 'queued', 0, %s, %s, %s) RETURNING {JOB_COLS}",
        (kind, workspace_id, data_source_id, subject, json.dumps(payload), now_ms, now_ms, now_ms),
    ).fetchone()
    assert row is not None
    return job_from_row(row)


def retire_queued(conn: psycopg.Connection, data_source_id: int, subject: str, now_ms: int) -> int:
    """Mark done the queued (not yet claimed) jobs about ``subject``: a newer change or a delete made them obsolete.
    Running jobs are left to their worker, whose final transaction finds them obsolete."""
    cur = conn.execute(
        "UPDATE jobs SET state = 'done', updated_at = %s "
        f"WHERE data_source_id = %s AND subject = %s AND {LIVE} AND state = 'queued'",
        (now_ms, data_source_id, subject),
    )
    return int(cur.rowcount)


def queue_index_job(conn: psycopg.Connection, ds: DataSource, doc: DocumentWrite, now_ms: int) -> Job:
    """Retire the queued jobs of older versions of ``doc`` and queue the index job of this one."""
    retire_queued(conn, ds.id, doc.document_id, now_ms)
    payload = {"document_id": doc.document_id, "hash": doc.hash}
    return enqueue(conn, INDEX_DOCUMENT, ds.workspace_id, ds.id, doc.document_id, payload, now_ms)


# A job is ready when it is queued and its ``run_after`` has come, or running with an expired lease (its worker died).
READY = "(state = 'running' AND lease_until <= %s) OR (state = 'queued' AND run_after <= %s)"


def _finish(
    conn: psycopg.Connection, job_id: int, owner: str | None, state: JobState, error: str | None, now_ms: int
) -> bool:
    """Settle a job: as ``owner`` (who must still hold it), or, with no owner, whoever holds it if it is live."""
    sql = "UPDATE jobs SET state = %s, error = %s, lease_owner = NULL, updated_at = %s WHERE id = %s"
    params: list[object] = [state.value, error, now_ms, job_id]
    if owner is None:
        sql += f" AND {LIVE}"
    else:
        sql += " AND state = 'running' AND lease_owner = %s"
        params.append(owner)
    return conn.execute(sql, params).rowcount > 0


def _document_row(conn: psycopg.Connection, pk: int) -> Document:
    row = conn.execute(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = %s", (pk,)).fetchone()
    assert row is not None
    return rows.document(row)


class PgJobs:
    """Queue half of :class:`PostgresStore` (the port of ``SqliteJobs``, same behaviour).

    Claims are one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)``: concurrent claimers, in any number
    of processes, skip each other's rows instead of waiting, and a row that changed since the statement's snapshot is
    re-checked once locked. The document-changing transactions lock the document row (``FOR UPDATE``) before they
    compare its hash and index state, so an index job and a newer upsert of the same document are serialized."""

    engine: PgEngine

    # --- the queue -----------------------------------------------------------------------------------------------
    def claim_jobs(self, owner: str, limit: int, lease_ms: int, now_ms: int) -> list[Job]:
        """Atomically lease up to ``limit`` ready jobs to ``owner`` until ``now_ms + lease_ms``: running jobs whose
        lease expired first (by expiry), then queued jobs whose ``run_after`` has come. Bumps ``attempts``."""
        if limit <= 0:
            return []
        with self.engine.write() as conn:
            got = conn.execute(
                "UPDATE jobs SET state = 'running', lease_owner = %s, lease_until = %s, attempts = attempts + 1, "
                f"updated_at = %s WHERE id IN (SELECT id FROM jobs WHERE {READY} "
                "ORDER BY (state = 'running') DESC, "
                "CASE WHEN state = 'running' THEN lease_until ELSE run_after END, id "
                f"LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING {JOB_COLS}",
                (owner, now_ms + lease_ms, now_ms, now_ms, now_ms, limit),
            ).fetchall()
        return sorted((job_from_row(r) for r in got), key=lambda j: j.id)

    def extend_leases(self, owner: str, job_ids: Sequence[int], lease_until: int) -> int:
        """Heartbeat: push the lease of those of ``job_ids`` that ``owner`` still holds; returns how many."""
        if not job_ids:
            return 0
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET lease_until = %s WHERE state = 'running' AND lease_owner = %s "
                "AND id = ANY(%s::bigint[])",
                (lease_until, owner, [int(i) for i in job_ids]),
            )
            return int(cur.rowcount)

    def complete_job(self, job: Job, owner: str, now_ms: int) -> bool:
        """Mark a job ``owner`` holds done (False if it no longer holds it, or it was finished already)."""
        with self.engine.write() as conn:
            return _finish(conn, job.id, owner, JobState.DONE, None, now_ms)

    def retry_job(self, job: Job, owner: str, error: str, run_after: int, now_ms: int) -> bool:
        """Give a failed attempt back to the queue, to run again from ``run_after`` (the backoff)."""
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'queued', error = %s, run_after = %s, lease_owner = NULL, lease_until = 0, "
                "updated_at = %s WHERE id = %s AND state = 'running' AND lease_owner = %s",
                (error, run_after, now_ms, job.id, owner),
            )
            return cur.rowcount > 0

    def fail_job(self, job: Job, owner: str, error: str, now_ms: int) -> bool:
        """Give up on a job. An index job's document, if still at the job's version, ends ``failed`` with ``error``
        (in the same transaction: a document is never left ``pending`` without a live job)."""
        with self.engine.write() as conn:
            if not _finish(conn, job.id, owner, JobState.FAILED, error, now_ms):
                return False
            if job.kind == INDEX_DOCUMENT and job.data_source_id is not None:
                conn.execute(
                    "UPDATE documents SET index_state = 'failed', index_error = %s WHERE data_source_id = %s "
                    # not only 'pending': a Dify document is past it (parsing, splitting, indexing) when its job fails
                    "AND document_id = %s AND hash = %s AND index_state NOT IN ('indexed', 'failed')",
                    (error, job.data_source_id, job.payload.get("document_id"), job.payload.get("hash")),
                )
            return True

    def running_count(self, ds: DataSource) -> int:
        """Queued and running jobs of a data source (Dust's ``check_upsert_queue`` ``running_count``)."""
        with self.engine.read() as conn:
            row = conn.execute(f"SELECT count(*) FROM jobs WHERE data_source_id = %s AND {LIVE}", (ds.id,)).fetchone()
        return int(row[0]) if row else 0

    def get_job(self, job_id: int) -> Job | None:
        with self.engine.read() as conn:
            row = conn.execute(f"SELECT {JOB_COLS} FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return job_from_row(row) if row else None

    def list_jobs(self, data_source_id: int) -> list[Job]:
        with self.engine.read() as conn:
            found = conn.execute(
                f"SELECT {JOB_COLS} FROM jobs WHERE data_source_id = %s ORDER BY id", (data_source_id,)
            ).fetchall()
        return [job_from_row(r) for r in found]

    def lease_owners(self) -> list[str]:
        """Distinct owners of running jobs (to release those of workers known dead)."""
        with self.engine.read() as conn:
            found = conn.execute(
                "SELECT DISTINCT lease_owner FROM jobs WHERE state = 'running' AND lease_owner IS NOT NULL"
            ).fetchall()
        return sorted(str(r[0]) for r in found)

    def release_leases(self, owner: str, now_ms: int) -> int:
        """Requeue, ready now, every job ``owner`` holds (its worker stopped or died); attempts are kept."""
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = 0, run_after = %s, "
                "updated_at = %s WHERE state = 'running' AND lease_owner = %s",
                (now_ms, now_ms, owner),
            )
            return int(cur.rowcount)

    def prune_jobs(self, finished_before_ms: int) -> int:
        """Delete done and failed jobs last updated before ``finished_before_ms``."""
        with self.engine.write() as conn:
            cur = conn.execute(
                "DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated_at < %s", (finished_before_ms,)
            )
            return int(cur.rowcount)

    # --- async upserts -------------------------------------------------------------------------------------------
    def write_pending_document(self, ds: DataSource, doc: DocumentWrite, now_ms: int) -> tuple[Document, Job | None]:
        """Store a document's new content and metadata as ``pending`` and queue its index job, in one transaction.
        Queued jobs of older versions are retired. Returns the job, or None when the same version is already
        indexed or already queued (nothing to do). The chunks (and ``chunk_count``) stay the previous version's
        until the job runs."""
        from alexandria.storage.postgres.core import forget_segments, write_document_row

        with self.engine.write() as conn:
            old = conn.execute(
                "SELECT id, hash, index_state FROM documents WHERE data_source_id = %s AND document_id = %s FOR UPDATE",
                (ds.id, doc.document_id),
            ).fetchone()
            if old is not None and str(old[1]) == doc.hash and str(old[2]) != IndexState.FAILED:
                live = conn.execute(
                    f"SELECT 1 FROM jobs WHERE data_source_id = %s AND subject = %s AND {LIVE} LIMIT 1",
                    (ds.id, doc.document_id),
                ).fetchone()
                if str(old[2]) == IndexState.INDEXED or live is not None:
                    return _document_row(conn, int(old[0])), None
            pk, existed = write_document_row(conn, ds.id, doc, now_ms, "pending")
            if existed:
                forget_segments(conn, pk)
            job = queue_index_job(conn, ds, doc, now_ms)
            document = _document_row(conn, pk)
        return document, job

    def document_index_info(self, ds: DataSource, document_id: str) -> DocumentIndexInfo | None:
        with self.engine.read() as conn:
            row = conn.execute(
                "SELECT id, data_source_id, document_id, hash, section, index_state, index_error, chunk_count "
                "FROM documents WHERE data_source_id = %s AND document_id = %s",
                (ds.id, document_id),
            ).fetchone()
        if row is None:
            return None
        return DocumentIndexInfo(
            pk=int(row[0]),
            data_source_id=int(row[1]),
            document_id=str(row[2]),
            hash=str(row[3]),
            section_json=str(row[4]),
            index_state=IndexState(str(row[5])),
            index_error=None if row[6] is None else str(row[6]),
            chunk_count=int(row[7]),
        )

    def index_document(
        self, ds: DataSource, job: Job, chunks: Sequence[ChunkWrite], vectors: Vectors, now_ms: int
    ) -> Document | None:
        """The end of an index job, in one transaction: if the document still has the job's hash and is not yet
        indexed, replace its chunks (rows, BM25 statistics, embeddings) and mark it ``indexed``; mark the job done
        either way. Returns the document, or None when the job was obsolete (nothing written)."""
        from alexandria.storage.chunk_index import checked_vectors as check_vectors
        from alexandria.storage.postgres.chunk_index import delete_chunks, insert_chunks

        vecs = check_vectors(ds, chunks, vectors)
        document_id, doc_hash = job.payload_str("document_id"), job.payload_str("hash")
        with self.engine.write() as conn:
            _finish(conn, job.id, None, JobState.DONE, None, now_ms)
            old = conn.execute(
                "SELECT id, hash, index_state FROM documents WHERE data_source_id = %s AND document_id = %s FOR UPDATE",
                (ds.id, document_id),
            ).fetchone()
            if old is None or str(old[1]) != doc_hash or str(old[2]) == IndexState.INDEXED:
                return None
            pk = int(old[0])
            delete_chunks(conn, ds.id, "document_pk = %s", (pk,))
            insert_chunks(conn, ds.id, pk, chunks, vecs)
            conn.execute(
                "UPDATE documents SET chunk_count = %s, token_count = %s, index_state = 'indexed', "
                "index_error = NULL WHERE id = %s",
                (len(chunks), sum(c.token_count for c in chunks), pk),
            )
            return _document_row(conn, pk)
