"""The durable job queue of the embedded store, and the two halves of an async upsert (a mixin of ``SqliteStore``).

Every queue operation is one ``BEGIN IMMEDIATE`` transaction, so claims are atomic and exclusive across threads and
processes. Jobs are enqueued inside the transaction of the data change they follow (:func:`enqueue`), and an index
job is marked done inside the transaction that writes its chunks, so a job re-run after a crash never duplicates
work: the document's hash and index state are re-checked under the write lock.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from alexandria.domain.jobs import INDEX_DOCUMENT, DocumentIndexInfo, IndexState, Job, JobState
from alexandria.domain.models import DataSource, Document
from alexandria.errors import InvalidRequest
from alexandria.ingest.base import Vectors
from alexandria.storage import rows
from alexandria.storage.base import ChunkWrite, DocumentWrite
from alexandria.storage.sqlite.chunks import forget_segments, insert_chunks, write_document_row
from alexandria.storage.sqlite.db import SqliteEngine, quote_ident
from alexandria.storage.sqlite.vectors import VectorIndexes

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
        payload=dict(json.loads(str(row[5]))),
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
    conn: sqlite3.Connection,
    kind: str,
    workspace_id: int,
    data_source_id: int | None,
    subject: str | None,
    payload: dict[str, Any],
    now_ms: int,
) -> Job:
    """Queue a job inside the caller's open write transaction (so it commits or rolls back with the data change)."""
    row = conn.execute(
        "INSERT INTO jobs (kind, workspace_id, data_source_id, subject, payload, state, attempts, created_at, "
        f"updated_at, run_after) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?) RETURNING {JOB_COLS}",
        (kind, workspace_id, data_source_id, subject, Job.encode_payload(payload), now_ms, now_ms, now_ms),
    ).fetchone()
    return job_from_row(row)


def retire_queued(conn: sqlite3.Connection, data_source_id: int, subject: str, now_ms: int) -> int:
    """Mark done the queued (not yet claimed) jobs about ``subject``: a newer change or a delete made them obsolete.
    Running jobs are left to their worker, whose final transaction finds them obsolete."""
    cur = conn.execute(
        "UPDATE jobs SET state = 'done', updated_at = ? "
        f"WHERE data_source_id = ? AND subject = ? AND {LIVE} AND state = 'queued'",
        (now_ms, data_source_id, subject),
    )
    return int(cur.rowcount)


def queue_index_job(conn: sqlite3.Connection, ds: DataSource, doc: DocumentWrite, now_ms: int) -> Job:
    """Retire the queued jobs of older versions of ``doc`` and queue the index job of this one (in the caller's
    transaction, with the document change)."""
    retire_queued(conn, ds.id, doc.document_id, now_ms)
    payload = {"document_id": doc.document_id, "hash": doc.hash}
    return enqueue(conn, INDEX_DOCUMENT, ds.workspace_id, ds.id, doc.document_id, payload, now_ms)


class SqliteJobs:
    """Queue half of :class:`SqliteStore`."""

    engine: SqliteEngine
    vectors: VectorIndexes

    if TYPE_CHECKING:  # provided by SqliteStore

        @staticmethod
        def _delete_chunks(conn: sqlite3.Connection, fts: str, document_pk: int) -> list[int]: ...
        @staticmethod
        def _vector_version(conn: sqlite3.Connection, data_source_id: int) -> int: ...
        @staticmethod
        def _bump_version(conn: sqlite3.Connection, data_source_id: int) -> int: ...

    # --- the queue -----------------------------------------------------------------------------------------------
    def claim_jobs(self, owner: str, limit: int, lease_ms: int, now_ms: int) -> list[Job]:
        """Atomically lease up to ``limit`` ready jobs to ``owner`` until ``now_ms + lease_ms``: queued jobs whose
        ``run_after`` has come, and running jobs whose lease expired (their worker died). Bumps ``attempts``."""
        if limit <= 0:
            return []
        with self.engine.write() as conn:
            ids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT id FROM jobs WHERE state = 'running' AND lease_until <= ? ORDER BY lease_until, id LIMIT ?",
                    (now_ms, limit),
                )
            ]
            if len(ids) < limit:
                ids += [
                    int(r[0])
                    for r in conn.execute(
                        "SELECT id FROM jobs WHERE state = 'queued' AND run_after <= ? ORDER BY run_after, id LIMIT ?",
                        (now_ms, limit - len(ids)),
                    )
                ]
            if not ids:
                return []
            got = conn.execute(
                "UPDATE jobs SET state = 'running', lease_owner = ?, lease_until = ?, attempts = attempts + 1, "
                f"updated_at = ? WHERE id IN (SELECT value FROM json_each(?)) RETURNING {JOB_COLS}",
                (owner, now_ms + lease_ms, now_ms, json.dumps(ids)),
            ).fetchall()
        return sorted((job_from_row(r) for r in got), key=lambda j: j.id)

    def extend_leases(self, owner: str, job_ids: Sequence[int], lease_until: int) -> int:
        """Heartbeat: push the lease of those of ``job_ids`` that ``owner`` still holds; returns how many."""
        if not job_ids:
            return 0
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET lease_until = ? WHERE state = 'running' AND lease_owner = ? "
                "AND id IN (SELECT value FROM json_each(?))",
                (lease_until, owner, json.dumps(list(job_ids))),
            )
            return int(cur.rowcount)

    def complete_job(self, job: Job, owner: str, now_ms: int) -> bool:
        """Mark a job ``owner`` holds done (False if it no longer holds it, or it was finished already)."""
        with self.engine.write() as conn:
            return self._finish(conn, job.id, owner, JobState.DONE, None, now_ms)

    def retry_job(self, job: Job, owner: str, error: str, run_after: int, now_ms: int) -> bool:
        """Give a failed attempt back to the queue, to run again from ``run_after`` (the backoff)."""
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'queued', error = ?, run_after = ?, lease_owner = NULL, lease_until = 0, "
                "updated_at = ? WHERE id = ? AND state = 'running' AND lease_owner = ?",
                (error, run_after, now_ms, job.id, owner),
            )
            return cur.rowcount > 0

    def fail_job(self, job: Job, owner: str, error: str, now_ms: int) -> bool:
        """Give up on a job. An index job's document, if still at the job's version, ends ``failed`` with ``error``
        (in the same transaction: a document is never left ``pending`` without a live job)."""
        with self.engine.write() as conn:
            if not self._finish(conn, job.id, owner, JobState.FAILED, error, now_ms):
                return False
            if job.kind == INDEX_DOCUMENT and job.data_source_id is not None:
                conn.execute(
                    "UPDATE documents SET index_state = 'failed', index_error = ? WHERE data_source_id = ? "
                    # not only 'pending': a Dify document is past it (parsing, splitting, indexing) when its job fails
                    "AND document_id = ? AND hash = ? AND index_state NOT IN ('indexed', 'failed')",
                    (error, job.data_source_id, job.payload.get("document_id"), job.payload.get("hash")),
                )
            return True

    @staticmethod
    def _finish(
        conn: sqlite3.Connection, job_id: int, owner: str | None, state: JobState, error: str | None, now_ms: int
    ) -> bool:
        sql = "UPDATE jobs SET state = ?, error = ?, lease_owner = NULL, updated_at = ? WHERE id = ?"
        params: list[object] = [state.value, error, now_ms, job_id]
        if owner is None:
            sql += f" AND {LIVE}"
        else:
            sql += " AND state = 'running' AND lease_owner = ?"
            params.append(owner)
        return conn.execute(sql, params).rowcount > 0

    def running_count(self, ds: DataSource) -> int:
        """Queued and running jobs of a data source (Dust's ``check_upsert_queue`` ``running_count``)."""
        row = (
            self.engine.reader()
            .execute(f"SELECT count(*) FROM jobs WHERE data_source_id = ? AND {LIVE}", (ds.id,))
            .fetchone()
        )
        return int(row[0])

    def get_job(self, job_id: int) -> Job | None:
        row = self.engine.reader().execute(f"SELECT {JOB_COLS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return job_from_row(row) if row else None

    def list_jobs(self, data_source_id: int) -> list[Job]:
        cur = self.engine.reader().execute(
            f"SELECT {JOB_COLS} FROM jobs WHERE data_source_id = ? ORDER BY id", (data_source_id,)
        )
        return [job_from_row(r) for r in cur]

    def lease_owners(self) -> list[str]:
        """Distinct owners of running jobs (to release those of workers known dead)."""
        cur = self.engine.reader().execute(
            "SELECT DISTINCT lease_owner FROM jobs WHERE state = 'running' AND lease_owner IS NOT NULL"
        )
        return sorted(str(r[0]) for r in cur)

    def release_leases(self, owner: str, now_ms: int) -> int:
        """Requeue, ready now, every job ``owner`` holds (its worker stopped or died); attempts are kept."""
        with self.engine.write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_until = 0, run_after = ?, updated_at = ? "
                "WHERE state = 'running' AND lease_owner = ?",
                (now_ms, now_ms, owner),
            )
            return int(cur.rowcount)

    def prune_jobs(self, finished_before_ms: int) -> int:
        """Delete done and failed jobs last updated before ``finished_before_ms``."""
        with self.engine.write() as conn:
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
        with self.engine.write() as conn:
            old = conn.execute(
                "SELECT id, hash, index_state FROM documents WHERE data_source_id = ? AND document_id = ?",
                (ds.id, doc.document_id),
            ).fetchone()
            if old is not None and str(old[1]) == doc.hash and str(old[2]) != IndexState.FAILED:
                live = conn.execute(
                    f"SELECT 1 FROM jobs WHERE data_source_id = ? AND subject = ? AND {LIVE} LIMIT 1",
                    (ds.id, doc.document_id),
                ).fetchone()
                if str(old[2]) == IndexState.INDEXED or live is not None:
                    row = conn.execute(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = ?", (old[0],)).fetchone()
                    return rows.document(row), None
            pk, existed = write_document_row(conn, ds.id, doc, now_ms, "pending")
            if existed:
                forget_segments(conn, pk)
            job = queue_index_job(conn, ds, doc, now_ms)
            row = conn.execute(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = ?", (pk,)).fetchone()
        return rows.document(row), job

    def document_index_info(self, ds: DataSource, document_id: str) -> DocumentIndexInfo | None:
        row = (
            self.engine.reader()
            .execute(
                "SELECT id, data_source_id, document_id, hash, section, index_state, index_error, chunk_count "
                "FROM documents WHERE data_source_id = ? AND document_id = ?",
                (ds.id, document_id),
            )
            .fetchone()
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
        """The end of an index job, in one transaction: if the document still has the job's hash and is not yet
        indexed, replace its chunks (rows, FTS, then the HNSW cache) and mark it ``indexed``; mark the job done
        either way. Returns the document, or None when the job was obsolete (nothing written)."""
        if len(chunks) != len(vectors):
            raise InvalidRequest("chunks and vectors differ in length")
        if len(chunks) and vectors.shape[1] != ds.dim:
            raise InvalidRequest(f"vectors have dimension {vectors.shape[1]}, data source expects {ds.dim}")
        document_id, doc_hash = job.payload_str("document_id"), job.payload_str("hash")
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        index = self.vectors.get(ds.id, ds.dim)
        fts = quote_ident(f"fts_{int(ds.id)}")
        with index.lock:
            with self.engine.write() as conn:
                self._finish(conn, job.id, None, JobState.DONE, None, now_ms)
                old = conn.execute(
                    "SELECT id, hash, index_state FROM documents WHERE data_source_id = ? AND document_id = ?",
                    (ds.id, document_id),
                ).fetchone()
                if old is None or str(old[1]) != doc_hash or str(old[2]) == IndexState.INDEXED:
                    return None
                pk = int(old[0])
                prev_version = self._vector_version(conn, ds.id)
                removed = self._delete_chunks(conn, fts, pk)
                added = insert_chunks(conn, fts, ds.id, pk, chunks, vecs)
                conn.execute(
                    "UPDATE documents SET chunk_count = ?, token_count = ?, index_state = 'indexed', "
                    "index_error = NULL WHERE id = ?",
                    (len(chunks), sum(c.token_count for c in chunks), pk),
                )
                new_version = self._bump_version(conn, ds.id)
                row = conn.execute(f"SELECT {rows.DOCUMENT_COLS} FROM documents WHERE id = ?", (pk,)).fetchone()
            # committed: mirror the change in the ANN cache if it was in step with the database
            if index.version == prev_version:
                index.remove(np.array(removed, dtype=np.int64))
                index.add(np.array(added, dtype=np.int64), vecs)
                index.version = new_version
        return rows.document(row)
