"""Dify's response shapes (api/fields/*_fields.py of the real server) from domain objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alexandria.domain.dify import ChildChunk, DatasetCounts, DatasetTag, MetadataField, Segment
from alexandria.domain.models import DataSource, Document
from alexandria.services.dify import DEFAULT_RETRIEVAL_MODEL, EMBEDDING_PROVIDER, display_status, indexing_status
from alexandria.services.dify_meta import BUILT_IN_NAMES
from alexandria.services.dify_retrieval import RetrievalRecord

CREATED_BY = "api"  # the key acts as the workspace owner; there are no user accounts


def secs(ms: int | None) -> int | None:
    return None if ms is None else int(ms // 1000)


def retrieval_model_dict(ds: DataSource) -> dict[str, Any]:
    stored = ds.dify.get("retrieval_model") or {**DEFAULT_RETRIEVAL_MODEL, "top_k": 2}
    model = {k: stored.get(k) for k in DEFAULT_RETRIEVAL_MODEL}  # the response's RetrievalModel keys only
    if ds.dify.get("indexing_technique") == "economy":
        model["search_method"] = "keyword_search"
    return model


def tag(t: DatasetTag) -> dict[str, Any]:
    return {"id": t.uuid, "name": t.name, "type": "knowledge", "binding_count": str(t.binding_count)}


def dataset(
    ds: DataSource,
    counts: DatasetCounts,
    tags: Sequence[DatasetTag],
    fields: Sequence[MetadataField],
    embedding_model: str,
) -> dict[str, Any]:
    dify = ds.dify
    technique = dify.get("indexing_technique")
    return {
        "id": ds.uuid,
        "name": ds.name,
        "description": ds.description or "",
        "provider": dify.get("provider") or "vendor",
        "permission": dify.get("permission") or "only_me",
        "data_source_type": "upload_file" if counts.document_count else None,
        "indexing_technique": technique,
        "app_count": 0,
        "document_count": counts.document_count,
        "word_count": counts.word_count,
        "created_by": CREATED_BY,
        "author_name": CREATED_BY,
        "created_at": secs(ds.created_at),
        "updated_by": CREATED_BY,
        "updated_at": secs(ds.updated_at or ds.created_at),
        "embedding_model": embedding_model if technique == "high_quality" else None,
        "embedding_model_provider": EMBEDDING_PROVIDER if technique == "high_quality" else None,
        "embedding_available": True,
        "retrieval_model_dict": retrieval_model_dict(ds),
        "summary_index_setting": dify.get("summary_index_setting"),
        "tags": [{"id": t.uuid, "name": t.name, "type": "knowledge"} for t in tags],
        "doc_form": dify.get("doc_form"),
        "external_knowledge_info": None,
        "external_retrieval_model": None,
        "doc_metadata": [{"id": f.uuid, "name": f.name, "type": f.type} for f in fields],
        "built_in_field_enabled": bool(dify.get("built_in_field_enabled")),
        "pipeline_id": None,
        "runtime_mode": "general",
        "chunk_structure": dify.get("doc_form"),
        "icon_info": None,
        "is_published": False,
        "total_documents": counts.document_count,
        "total_available_documents": counts.available_document_count,
        "enable_api": dify.get("enable_api", True) is not False,
        "is_multimodal": False,
    }


def _file(doc: Document) -> dict[str, Any] | None:
    file = (doc.dify or {}).get("file")
    if not file:
        return None
    return {
        "id": file.get("id"),
        "name": file.get("name"),
        "size": file.get("size"),
        "extension": file.get("extension"),
        "mime_type": file.get("mime_type"),
        "created_by": CREATED_BY,
        "created_at": file.get("created_at"),
    }


def doc_metadata(doc: Document, fields: Sequence[MetadataField]) -> list[dict[str, Any]]:
    out = [
        {"id": f.uuid, "name": f.name, "type": f.type, "value": doc.doc_metadata[f.name]}
        for f in fields
        if f.name in doc.doc_metadata
    ]
    types = {"upload_date": "time", "last_update_date": "time"}
    out += [
        {"id": "built-in", "name": k, "type": types.get(k, "string"), "value": v}
        for k, v in doc.doc_metadata.items()
        if k in BUILT_IN_NAMES
    ]
    return out


def _record(doc: Document) -> dict[str, Any]:
    return doc.dify or {}


def document(doc: Document, fields: Sequence[MetadataField]) -> dict[str, Any]:
    """``DocumentResponse``: documents in lists and in create/update answers."""
    rec = _record(doc)
    file = _file(doc)
    return {
        "id": doc.uuid,
        "position": doc.position,
        "data_source_type": rec.get("data_source_type") or "upload_file",
        "data_source_info": {"upload_file_id": file["id"]} if file else {},
        "data_source_detail_dict": {"upload_file": file} if file else {},
        "dataset_process_rule_id": rec.get("process_rule_id"),
        "name": doc.title,
        "created_from": rec.get("created_from") or "api",
        "created_by": CREATED_BY,
        "created_at": secs(doc.created),
        "tokens": int(rec.get("tokens") or (doc.token_count if not rec else 0)),
        "indexing_status": indexing_status(doc),
        "error": doc.index_error,
        "enabled": doc.enabled,
        "disabled_at": secs(doc.disabled_at),
        "disabled_by": CREATED_BY if not doc.enabled else None,
        "archived": doc.archived,
        "display_status": display_status(doc),
        "word_count": int(rec.get("word_count") or (doc.text_size if not rec else 0)),
        "hit_count": 0,
        "doc_form": rec.get("doc_form") or "text_model",
        "doc_metadata": doc_metadata(doc, fields),
        "summary_index_status": None,
        "need_summary": False,
    }


def document_detail(
    doc: Document, fields: Sequence[MetadataField], segment_count: int, metadata: str, dataset_id: str
) -> dict[str, Any]:
    """``GET .../documents/{id}?metadata=all|only|without``."""
    rec = _record(doc)
    meta = doc_metadata(doc, fields)
    if metadata == "only":
        return {"id": doc.uuid, "doc_type": None, "doc_metadata": meta}
    base = document(doc, fields)
    rule = rec.get("process_rule")
    out: dict[str, Any] = {
        "id": doc.uuid,
        "position": doc.position,
        "data_source_type": base["data_source_type"],
        "data_source_info": base["data_source_detail_dict"],  # the detail dict: {"upload_file": {...}}
        "dataset_process_rule_id": rec.get("process_rule_id"),
        "dataset_process_rule": rule,
        "document_process_rule": (
            {"id": rec.get("process_rule_id"), "dataset_id": dataset_id, **(rule or {})} if rule else None
        ),
        "name": doc.title,
        "created_from": base["created_from"],
        "created_by": CREATED_BY,
        "created_at": secs(doc.created),
        "tokens": base["tokens"],
        "indexing_status": base["indexing_status"],
        "completed_at": rec.get("completed_at") if rec else secs(doc.updated),
        "updated_at": secs(doc.updated),
        "indexing_latency": rec.get("indexing_latency"),
        "error": doc.index_error,
        "enabled": doc.enabled,
        "disabled_at": secs(doc.disabled_at),
        "disabled_by": base["disabled_by"],
        "archived": doc.archived,
        "segment_count": segment_count,
        "average_segment_length": base["word_count"] // segment_count if segment_count else 0,
        "hit_count": 0,
        "display_status": base["display_status"],
        "doc_form": base["doc_form"],
        "doc_language": rec.get("doc_language") or "English",
        "summary_index_status": None,
        "need_summary": False,
    }
    if metadata == "all":
        out["doc_type"] = None
        out["doc_metadata"] = meta
    return out


def indexing_state(doc: Document, total: int, completed: int) -> dict[str, Any]:
    rec = _record(doc)
    return {
        "id": doc.uuid,
        "indexing_status": indexing_status(doc),
        "processing_started_at": rec.get("processing_started_at"),
        "parsing_completed_at": rec.get("parsing_completed_at"),
        "cleaning_completed_at": rec.get("cleaning_completed_at"),
        "splitting_completed_at": rec.get("splitting_completed_at"),
        "completed_at": rec.get("completed_at") if rec else secs(doc.updated),
        "paused_at": None,
        "error": doc.index_error,
        "stopped_at": secs(doc.updated) if doc.index_state == "failed" else None,
        "completed_segments": completed,
        "total_segments": total,
    }


def child_chunk(c: ChildChunk, segment_uuid: str) -> dict[str, Any]:
    return {
        "id": c.uuid,
        "segment_id": segment_uuid,
        "content": c.content,
        "position": c.position,
        "word_count": c.word_count,
        "type": c.type,
        "created_at": secs(c.created_at),
        "updated_at": secs(c.updated_at),
    }


def segment(s: Segment, document_uuid: str) -> dict[str, Any]:
    return {
        "id": s.uuid,
        "position": s.position,
        "document_id": document_uuid,
        "content": s.content,
        "sign_content": s.content,
        "answer": s.answer,
        "word_count": s.word_count,
        "tokens": s.tokens,
        "keywords": list(s.keywords),
        "index_node_id": s.index_node_id,
        "index_node_hash": s.hash,
        "hit_count": s.hit_count,
        "enabled": s.enabled,
        "disabled_at": secs(s.disabled_at),
        "disabled_by": CREATED_BY if not s.enabled else None,
        "status": s.status,
        "created_by": CREATED_BY,
        "created_at": secs(s.created_at),
        "updated_at": secs(s.updated_at),
        "updated_by": CREATED_BY,
        "indexing_at": secs(s.indexing_at),
        "completed_at": secs(s.completed_at),
        "error": s.error,
        "stopped_at": secs(s.stopped_at),
        "child_chunks": [child_chunk(c, s.uuid) for c in s.children],
        "attachments": [],
        "summary": None,
    }


def record(r: RetrievalRecord, fields: Sequence[MetadataField]) -> dict[str, Any]:
    """One ``records`` item of retrieve / hit-testing."""
    doc = r.document
    if r.segment is not None:
        seg = segment(r.segment, doc.uuid)
    else:  # a chunk of a document written through Dust, shown as a segment
        seg = {
            "id": f"{doc.uuid}:{r.chunk.offset}",
            "position": r.chunk.offset + 1,
            "document_id": doc.uuid,
            "content": r.chunk.text,
            "sign_content": r.chunk.text,
            "answer": None,
            "word_count": len(r.chunk.text),
            "tokens": 0,
            "keywords": [],
            "index_node_id": f"{doc.uuid}:{r.chunk.offset}",
            "index_node_hash": r.chunk.hash,
            "hit_count": 0,
            "enabled": True,
            "disabled_at": None,
            "disabled_by": None,
            "status": "completed",
            "created_by": CREATED_BY,
            "created_at": secs(doc.created),
            "updated_at": secs(doc.updated),
            "updated_by": CREATED_BY,
            "indexing_at": secs(doc.created),
            "completed_at": secs(doc.updated),
            "error": None,
            "stopped_at": None,
            "child_chunks": [],
            "attachments": [],
            "summary": None,
        }
    seg["document"] = {
        "id": doc.uuid,
        "data_source_type": (doc.dify or {}).get("data_source_type") or "upload_file",
        "name": doc.title,
        "doc_type": None,
        "doc_metadata": {k: v for k, v in doc.doc_metadata.items()} or None,
    }
    return {
        "segment": seg,
        "child_chunks": [
            {"id": c.uuid, "content": c.content, "position": c.position, "score": score} for c, score in r.child_chunks
        ],
        "score": r.score,
        "tsne_position": None,
        "files": [],
        "summary": None,
    }
