"""Dust response shapes (``../shared/specs/dust-behaviour.md``)."""

from __future__ import annotations

from typing import Any

from alexandria.domain.models import ChunkHit, DataSource, DataSourceView, Document, DocumentHits, Folder, Space


def space(s: Space) -> dict[str, Any]:
    return {
        "createdAt": s.created_at,
        "groupIds": list(s.group_ids),
        "isRestricted": s.restricted,
        "kind": s.kind.value,
        "managementMode": "manual",
        "name": s.name,
        "sId": s.sid,
        "updatedAt": s.updated_at,
    }


def data_source(ds: DataSource) -> dict[str, Any]:
    return {
        "id": ds.id,
        "sId": ds.sid,
        "createdAt": ds.created_at,
        "name": ds.name,
        "description": ds.description,
        "dustAPIProjectId": str(ds.workspace_id),
        "dustAPIDataSourceId": ds.core_id,
        "connectorId": None,
        "connectorProvider": ds.connector_provider,
        "assistantDefaultSelected": False,
    }


def chunk(c: ChunkHit) -> dict[str, Any]:
    out: dict[str, Any] = {
        "text": c.text,
        "hash": c.hash,
        "offset": c.offset,
        "vector": None,
        "score": c.score,
        "expanded_offsets": list(c.expanded_offsets),
    }
    if c.keyword_score is not None or c.vector_score is not None:
        out["keyword_score"] = c.keyword_score
        out["vector_score"] = c.vector_score
    return out


def document(
    ds: DataSource,
    d: Document,
    chunks: list[ChunkHit] | None = None,
    *,
    token_count: int | None = None,
    with_text: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "data_source_id": ds.core_id,
        "data_source_internal_id": ds.core_id,
        "created": d.created,
        "document_id": d.document_id,
        "timestamp": d.timestamp,
        "title": d.title,
        "mime_type": d.mime_type,
        "provider_visibility": None,
        "tags": list(d.tags),
        "parent_id": d.parent_id,
        "parents": list(d.parents),
        "source_url": d.source_url,
        "hash": d.hash,
        "text_size": d.text_size,
        "chunk_count": d.chunk_count,
        "chunks": [chunk(c) for c in chunks or []],
        "token_count": d.token_count if token_count is None else token_count,
    }
    if with_text and d.text is not None:
        out["text"] = d.text
    return out


def light_document(d: Document) -> dict[str, Any]:
    return {
        "hash": d.hash,
        "text_size": d.text_size,
        "chunk_count": d.chunk_count,
        "token_count": d.token_count,
        "created": d.created,
    }


def search_results(ds: DataSource, results: list[DocumentHits], full_text: bool) -> dict[str, Any]:
    docs = []
    for r in results:
        returned = sum(1 + len(c.expanded_offsets) for c in r.chunks)
        docs.append(document(ds, r.document, r.chunks, token_count=returned * ds.chunk_size, with_text=full_text))
    return {"documents": docs}


def view(v: DataSourceView, ds: DataSource, space_sid: str) -> dict[str, Any]:
    """``DataSourceViewResource.toJSON``; category: no connector → folder, webcrawler → website, else managed."""
    provider = ds.connector_provider
    category = "folder" if provider is None else "website" if provider == "webcrawler" else "managed"
    return {
        "category": category,
        "createdAt": v.created_at,
        "dataSource": data_source(ds),
        "id": v.id,
        "kind": v.kind.value,
        "parentsIn": None if v.parents_in is None else list(v.parents_in),
        "sId": v.sid,
        "updatedAt": v.updated_at,
        "spaceId": space_sid,
    }


def folder(ds: DataSource, f: Folder) -> dict[str, Any]:
    return {
        "data_source_id": ds.core_id,
        "folder_id": f.folder_id,
        "title": f.title,
        "parents": list(f.parents),
        "parent_id": f.parent_id,
        "mime_type": f.mime_type,
        "source_url": f.source_url,
        "provider_visibility": f.provider_visibility,
        "timestamp": f.timestamp,
        "created": f.created,
    }
