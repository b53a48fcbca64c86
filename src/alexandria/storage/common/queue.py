"""The durable job queue and the two halves of an async upsert, written once for both engines (a mixin of the
stores). Only claiming is per engine (``claim_jobs`` in ``storage/sqlite/jobs.py``, ``storage/postgres/jobs.py``).

Jobs are enqueued inside the transaction of the data change they follow (``queue_rows.enqueue``), and an index job
is marked done inside the transaction that writes its chunks, so a job re-run after a crash never duplicates work:
the document's hash and index state are re-checked with its row locked (``queue_rows.index_target``).
"""

from __future__ import annotations

from collections.abc import Sequence

from alexandria.domain.jobs import INDEX_KINDS, DocumentIndexInfo, IndexState, Job, JobState
from alexandria.domain.models import DataSource, Document
from alexandria.ingest.base import Vectors
from alexandria.storage.base import ChunkWrite, DocumentWrite
from alexandria.storage.chunk_index import ChunkIndex, checked_vectors
from alexandria.storage.common.document_rows import document_row, forget_segments, locked_document, write_document_row
from alexandria.storage.common.queue_rows import (
    JOB_COLS,
    LIVE,
    finish_job,
    index_target,
    job_from_row,
    queue_index_job,
)
from alexandria.storage.database import Database


class QueueRows:
    """The queue's bookkeeping and async upserts over :class:`Database` and the engine's :class:`ChunkIndex`."""

    db: Database
    index: ChunkIndex

    # --- the queue -----------------------------------------------------------------------------------------------
    def extend_leases(self, owner: str, job_ids: Sequence[int], lease_until: int) -> int:
        """Heartbeat: push the lease of those of ``job_ids`` that ``owner`` still holds; returns how many."""
        if not job_ids:
            return 0
        with self.db.write() as conn:
            cur = conn.execute(
                f"UPDATE jobs SET lease_until = ? WHERE state = 'running' AND lease_owner = ? "
                f"AND {conn.dialect.any_of('id')}",
                (lease_until, owner, conn.dialect.seq(int(i) for i in job_ids)),
            )
            return int(cur.rowcount)

    def complete_job(self, job: Job, owner: str, now_ms: int) -> bool:
        """Mark a job ``owner`` holds done (False if it no longer holds it, or it was finished already)."""
        with self.db.write() as conn:
            return finish_job(conn, job.id, owner, JobState.DONE, None, now_ms)

    def retry_job(self, job: Job, owner: str, error: str, run_after: int, now_ms: int) -> bool:
        """Give a failed attempt back to the queue, to run again from ``run_after`` (the backoff)."""
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'queued', error = ?, run_after = ?, lease_owner = NULL, lease_until = 0, "
                "updated_at = ? WHERE id = ? AND state = 'running' AND lease_owner = ?",
                (error, run_after, now_ms, job.id, owner),
            )
            return int(cur.rowcount) > 0

    def fail_job(self, job: Job, owner: str, error: str, now_ms: int) -> bool:
        """Give up on a job. An index job's document, if still at the job's version, ends ``failed`` with ``error``
        (in the same transaction: a document is never left ``pending`` without a live job)."""
        with self.db.write() as conn:
            if not finish_job(conn, job.id, owner, JobState.FAILED, error, now_ms):
                return False
            if job.kind in INDEX_KINDS and job.data_source_id is not None:
                conn.execute(
                    "UPDATE documents SET index_state = 'failed', index_error = ? WHERE data_source_id = ? "
                    # not only 'pending': a Dify document is past it (parsing, splitting, indexing) when its job fails
                    "AND document_id = ? AND hash = ? AND index_state NOT IN ('indexed', 'failed')",
                    (error, job.data_source_id, job.payload.get("document_id"), job.payload.get("hash")),
                )
            return True

    def running_count(self, ds: DataSource) -> int:
        """Queued and running jobs of a data source (Dust's ``check_upsert_queue`` ``running_count``)."""
        with self.db.read() as conn:
            return int(conn.scalar(f"SELECT count(*) FROM jobs WHERE data_source_id = ? AND {LIVE}", (ds.id,)) or 0)

    def get_job(self, job_id: int) -> Job | None:
        with self.db.read() as conn:
            row = conn.one(f"SELECT {JOB_COLS} FROM jobs WHERE id = ?", (job_id,))
        return job_from_row(row) if row else None

    def list_jobs(self, data_source_id: int) -> list[Job]:
        with self.db.read() as conn:
            found = conn.all(f"SELECT {JOB_COLS} FROM jobs WHERE data_source_id = ? ORDER BY id", (data_source_id,))
        return [job_from_row(r) for r in found]

    def lease_owners(self) -> list[str]:
        """Distinct owners of running jobs (to release those of workers known dead)."""
        with self.db.read() as conn:
            found = conn.all(
                "SELECT DISTINCT lease_owner FROM jobs WHERE state = 'running' AND lease_owner IS NOT NULL"
            )
        return sorted(str(r[0]) for r in found)

    def release_leases(self, owner: str, now_ms: int) -> int:
        """Requeue, ready now, every job ``owner`` holds (its worker stopped or died); attempts are kept."""
        with self.db.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = 0, run_after = ?, updated_at = ? "
                "WHERE state = 'running' AND lease_owner = ?",
                (now_ms, now_ms, owner),
            )
            return int(cur.rowcount)

    def prune_jobs(self, finished_before_ms: int) -> int:
        """Delete done and failed jobs last updated before ``finished_before_ms``."""
        with self.db.write() as conn:
            cur = conn.execute(
                "DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated_at < ?", (finished_before_ms,)
            )
            return int(cur.rowcount)

    # --- async upserts -------------------------------------------------------------------------------------------
    def write_pending_document(self, ds: DataSource, doc: DocumentWrite, now_ms: int) -> tuple[Document, Job | None]:
        """Store a document's new content and metadata as ``pending`` and queue its index job, in one transaction.
        Queued jobs of older versions are retired. Returns the job, or None when the same version is already
        indexed or already queued (nothing to do). The chunks (and ``chunk_count``) stay the previous version's
        until the job runs."""
        with self.db.write() as conn:
            old = locked_document(conn, ds.id, doc.document_id, "id, hash, index_state")
            if old is not None and str(old[1]) == doc.hash and str(old[2]) != IndexState.FAILED:
                live = conn.one(
                    f"SELECT 1 FROM jobs WHERE data_source_id = ? AND subject = ? AND {LIVE} LIMIT 1",
                    (ds.id, doc.document_id),
                )
                if str(old[2]) == IndexState.INDEXED or live is not None:
                    return document_row(conn, int(old[0])), None
            pk, existed = write_document_row(conn, ds.id, doc, now_ms, "pending")
            if existed:
                forget_segments(conn, pk)
            job = queue_index_job(conn, ds, doc, now_ms)
            return document_row(conn, pk), job

    def document_index_info(self, ds: DataSource, document_id: str) -> DocumentIndexInfo | None:
        with self.db.read() as conn:
            row = conn.one(
                "SELECT id, data_source_id, document_id, hash, section, index_state, index_error, chunk_count "
                "FROM documents WHERE data_source_id = ? AND document_id = ?",
                (ds.id, document_id),
            )
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
        """The end of an index job, in one transaction: if the job is not obsolete, replace the document's chunks
        (rows and both indexes) and mark it ``indexed``; mark the job done either way. Returns the document, or None
        when the job was obsolete (nothing written)."""
        checked_vectors(ds, chunks, vectors)  # mismatched vectors fail even when the job turns out obsolete
        with self.index.change(ds) as ch:
            finish_job(ch.conn, job.id, None, JobState.DONE, None, now_ms)
            target = index_target(ch.conn, ds.id, job)
            if target is None:
                return None
            pk = int(target[0])
            ch.remove_document(pk)
            ch.add(pk, chunks, vectors)
            ch.conn.execute(
                "UPDATE documents SET chunk_count = ?, token_count = ?, index_state = 'indexed', index_error = NULL "
                "WHERE id = ?",
                (len(chunks), sum(c.token_count for c in chunks), pk),
            )
            return document_row(ch.conn, pk)
