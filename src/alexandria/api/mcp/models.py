"""The typed results of the MCP tools (their ``outputSchema``) and the filter input of ``search_knowledge``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

IndexStatus = Literal["pending", "indexed", "failed"]


class KnowledgeBase(BaseModel):
    id: str = Field(description="The knowledge base id (a data source sId) every other tool takes.")
    name: str
    description: str | None
    space: str = Field(description="Name of the space holding it.")
    space_id: str
    dify_dataset_id: str = Field(description="The same knowledge base's id in the Dify API (/v1/datasets/{id}).")
    embedder: str
    chunk_size: int
    managed: bool = Field(description="Written by a connector: read-only for this server's tools.")
    can_write: bool = Field(description="Whether this key may write here (upsert, upload, delete).")


class KnowledgeBaseList(BaseModel):
    knowledge_bases: list[KnowledgeBase]


class Scores(BaseModel):
    fused: float | None = Field(description="The ranking score (hybrid: the fused score).")
    keyword: float | None = Field(description="BM25 score, when the keyword signal was computed.")
    semantic: float | None = Field(description="Cosine similarity, when the vector signal was computed.")


class Position(BaseModel):
    chunk_index: int = Field(description="Index of the chunk in its document (0-based), for get_chunk_context.")
    chunk_count: int = Field(description="How many chunks the document has.")


class SearchHit(BaseModel):
    knowledge_base_id: str
    document_id: str
    title: str
    source_url: str | None
    score: float | None
    scores: Scores
    position: Position
    text: str
    tags: list[str]
    timestamp: int = Field(description="The document's timestamp, epoch milliseconds.")


class SearchResult(BaseModel):
    query: str
    mode: str
    knowledge_base_ids: list[str] = Field(description="The knowledge bases searched.")
    hits: list[SearchHit]


class SearchFilters(BaseModel):
    """Document filters, applied before ranking; every constraint that is set must hold."""

    model_config = {"extra": "forbid"}

    tags_in: list[str] | None = Field(None, description="Documents with at least one of these tags.")
    tags_not: list[str] | None = Field(None, description="Documents with none of these tags.")
    parents_in: list[str] | None = Field(None, description="Documents under at least one of these parents.")
    parents_not: list[str] | None = Field(None, description="Documents under none of these parents.")
    timestamp_gt: int | str | None = Field(
        None, description="Documents at or after this time: epoch milliseconds or an ISO 8601 date/time."
    )
    timestamp_lt: int | str | None = Field(
        None, description="Documents at or before this time: epoch milliseconds or an ISO 8601 date/time."
    )


class GrepLine(BaseModel):
    document_id: str
    title: str
    line: int = Field(description="1-based line number, for read_document(start_line=...).")
    text: str


class GrepResult(BaseModel):
    pattern: str
    matches: list[GrepLine]
    scanned_documents: int
    truncated: bool = Field(description="True when max_matches was reached: more lines may match.")


class DocumentInfo(BaseModel):
    document_id: str
    title: str
    source_url: str | None
    tags: list[str]
    status: IndexStatus
    error: str | None
    chunks: int
    tokens: int
    chars: int
    timestamp: int


class DocumentList(BaseModel):
    knowledge_base_id: str
    documents: list[DocumentInfo]
    total: int
    next_offset: int | None = Field(description="Pass as offset to get the next page; null on the last page.")


class DocumentText(BaseModel):
    knowledge_base_id: str
    document_id: str
    title: str
    source_url: str | None
    text: str
    offset: int
    total_chars: int
    total_lines: int
    next_offset: int | None = Field(description="Pass as offset to read on; null at the end of the document.")


class Chunk(BaseModel):
    chunk_index: int
    text: str


class ChunkContext(BaseModel):
    knowledge_base_id: str
    document_id: str
    title: str
    chunk_count: int
    chunks: list[Chunk]


class Column(BaseModel):
    name: str
    type: str
    possible_values: list[str] | None


class TableInfo(BaseModel):
    table_id: str
    name: str = Field(description="The name to use in SQL.")
    title: str
    description: str
    columns: list[Column]


class TableList(BaseModel):
    knowledge_base_id: str
    tables: list[TableInfo]


class QueryResult(BaseModel):
    columns: list[Column]
    rows: list[dict[str, Any]]
    truncated: bool
    elapsed_ms: float


class IndexingStatus(BaseModel):
    knowledge_base_id: str
    job_id: str | None
    document_id: str | None
    state: str = Field(description="queued | running | done | failed (a job); pending | indexed | failed (a document)")
    error: str | None
    attempts: int | None
    queued_jobs: int = Field(description="Index jobs of the knowledge base still queued or running.")


class WriteResult(BaseModel):
    knowledge_base_id: str
    document_id: str
    job_id: str | None = Field(
        description="Handle for get_indexing_status; null when nothing was queued (same content, or a delete). "
        "Finished jobs are kept for a day."
    )
    status: str = Field(description="queued | unchanged | deleted | not_found")
