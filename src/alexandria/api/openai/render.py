"""OpenAI's object shapes: ``file``, ``vector_store``, ``vector_store.file``, ``vector_store.files_batch`` and the
search results page (``openai/openai-openapi`` schemas; times in Unix seconds)."""

from __future__ import annotations

from typing import Any

from alexandria.domain.models import DataSource, Document
from alexandria.domain.openai import BATCH_PREFIX, FILE_PREFIX, STORE_PREFIX, FileCounts, StoredFile
from alexandria.services.openai_stores import (
    BatchInfo,
    SearchHit,
    StoreInfo,
    chunking_of,
    file_error_code,
    file_status,
)


def store_id(ds: DataSource) -> str:
    return STORE_PREFIX + ds.uuid


def vs_file_id(doc: Document) -> str:
    return FILE_PREFIX + doc.document_id


def file(f: StoredFile) -> dict[str, Any]:
    return {
        "id": f.file_id,
        "object": "file",
        "bytes": f.size,
        "created_at": f.created_at // 1000,
        "filename": f.name,
        "purpose": f.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def counts(c: FileCounts) -> dict[str, int]:
    return {"in_progress": c.in_progress, "completed": c.completed, "failed": c.failed, "cancelled": c.cancelled,
            "total": c.total}  # fmt: skip


def store(info: StoreInfo) -> dict[str, Any]:
    return {
        "id": store_id(info.ds),
        "object": "vector_store",
        "created_at": info.ds.created_at // 1000,
        "name": info.name,
        "description": info.ds.description or None,
        "usage_bytes": info.usage_bytes,
        "file_counts": counts(info.counts),
        "status": info.status,
        "expires_after": info.expires_after,
        "expires_at": info.expires_at,
        "last_active_at": info.last_active_at,
        "metadata": info.metadata,
    }


def vs_file(ds: DataSource, doc: Document) -> dict[str, Any]:
    status = file_status(doc)
    error = None
    if status == "failed":
        error = {"code": file_error_code(doc), "message": doc.index_error or "The file could not be indexed."}
    size = ((doc.dify or {}).get("file") or {}).get("size")
    return {
        "id": vs_file_id(doc),
        "object": "vector_store.file",
        "usage_bytes": (size if isinstance(size, int) else doc.text_size) if status == "completed" else 0,
        "created_at": doc.created // 1000,
        "vector_store_id": store_id(ds),
        "status": status,
        "last_error": error,
        "chunking_strategy": chunking_of(doc),
        "attributes": doc.doc_metadata or {},
    }


def batch(ds: DataSource, info: BatchInfo) -> dict[str, Any]:
    return {
        "id": BATCH_PREFIX + info.batch,
        "object": "vector_store.files_batch",
        "created_at": info.created_at,
        "vector_store_id": store_id(ds),
        "status": info.status,
        "file_counts": counts(info.counts),
    }


def search_page(queries: list[str], hits: list[SearchHit]) -> dict[str, Any]:
    return {
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": [
            {
                "file_id": vs_file_id(h.document),
                "filename": h.document.title,
                "score": h.score,
                "attributes": h.document.doc_metadata or {},
                "content": [{"type": "text", "text": c.text} for c in h.chunks],
            }
            for h in hits
        ],
        "has_more": False,
        "next_page": None,
    }
