"""Jobs of the durable queue and the index state of documents. Plain dataclasses: no HTTP, no SQL."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any


class JobState(enum.StrEnum):
    QUEUED = "queued"  # waiting (``run_after`` may be in the future: a retry's backoff)
    RUNNING = "running"  # claimed by a worker, whose lease ends at ``lease_until``
    DONE = "done"  # finished, made obsolete by a newer change, or retired by a delete
    FAILED = "failed"  # gave up after its last attempt; ``error`` says why


class IndexState(enum.StrEnum):
    INDEXED = "indexed"  # the chunks reflect the stored content
    PENDING = "pending"  # new content stored, its index job queued; chunks are still the previous version's
    FAILED = "failed"  # the index job gave up; ``index_error`` says why


INDEX_DOCUMENT = "index_document"  # payload: {"document_id": <Dust document id>, "hash": <content hash>}
INDEX_DIFY_DOCUMENT = "index_dify_document"  # the same payload, for a document written through Dify's pipeline
INDEX_KINDS = frozenset({INDEX_DOCUMENT, INDEX_DIFY_DOCUMENT})  # jobs whose failure fails their document


def index_kind(dify_record: object) -> str:
    """The index job kind of a document: Dify's pipeline for one written through Dify (it has a processing record),
    Dust's section chunker otherwise."""
    return INDEX_DOCUMENT if dify_record is None else INDEX_DIFY_DOCUMENT


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    workspace_id: int
    data_source_id: int | None
    subject: str | None  # what the job is about (a document id): newer changes to it retire queued jobs
    payload: dict[str, Any]  # ids and a version, never content
    state: JobState
    attempts: int  # claims so far, this one included
    error: str | None
    run_after: int  # epoch ms
    lease_owner: str | None
    lease_until: int  # epoch ms
    created_at: int
    updated_at: int

    def payload_str(self, key: str) -> str:
        value = self.payload.get(key)
        if not isinstance(value, str):
            raise ValueError(f"job {self.id} ({self.kind}) has no string {key!r} in its payload")
        return value

    @staticmethod
    def encode_payload(payload: dict[str, Any]) -> str:
        return json.dumps(payload, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class DocumentIndexInfo:
    """What an index job needs of a stored document (and what tests inspect): its stored content and state."""

    pk: int
    data_source_id: int
    document_id: str
    hash: str
    section_json: str
    index_state: IndexState
    index_error: str | None
    chunk_count: int


def index_job_obsolete(job: Job, stored: tuple[str, str] | None) -> bool:
    """Whether an index job has nothing left to do, given its document's stored ``(hash, index_state)`` (None: the
    document is gone): the document was deleted, holds another version than the job's (a newer change superseded
    it), or is indexed already (a job re-run after a crash). An obsolete job is marked done without writing."""
    return stored is None or stored[0] != job.payload_str("hash") or stored[1] == IndexState.INDEXED
