"""Dify segment and child chunk routes, and retrieval (``/retrieve`` and ``/hit-testing``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from alexandria.api.admission import run_write
from alexandria.api.deps import run_sync
from alexandria.api.dify import render
from alexandria.api.dify.common import AuthDep, CoreDep, invalid_param, json_object, op_id, page_params, resolve_dataset
from alexandria.api.dify.documents import fields_of, resolve_document
from alexandria.domain.dify import Segment
from alexandria.domain.metadata_filter import MetadataFilterError, parse_metadata_filter
from alexandria.domain.models import DataSource, Document
from alexandria.services.core import Core

router = APIRouter(prefix="/v1")

SEGMENT_STATUSES = ("waiting", "indexing", "completed", "error", "re_segment")
MAX_QUERY_CHARS = 250


def doc_form(doc: Document) -> str:
    return str((doc.dify or {}).get("doc_form") or "text_model")


async def _segment_of(core: Core, ds: DataSource, document_id: str, segment_id: str) -> tuple[Document, Segment]:
    doc = await resolve_document(core, ds, document_id)
    return doc, await run_sync(core.dify_segments.segment, doc, segment_id)


@router.post("/datasets/{dataset_id}/documents/{document_id}/segments")
async def create_segments(request: Request, dataset_id: str, document_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc = await resolve_document(core, ds, document_id)
    body = await json_object(request)
    items = body.get("segments")
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        # Dify answers a body validation failure of this route with {"error": ...} instead of its envelope
        return JSONResponse({"error": "segments: a non-empty list of {content, answer?, keywords?} is required"}, 400)
    created = await run_write(request, core.dify_segments.create_segments, ds, doc, items)
    return {"data": [render.segment(s, doc.uuid) for s in created], "doc_form": doc_form(doc)}


@router.get("/datasets/{dataset_id}/documents/{document_id}/segments")
async def list_segments(request: Request, dataset_id: str, document_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc = await resolve_document(core, ds, document_id)
    page, limit = page_params(request)
    statuses = [s for s in request.query_params.getlist("status") if s]
    keyword = request.query_params.get("keyword") or None
    size = min(limit, 100)
    segs, total = await run_sync(core.dify_segments.list_segments, doc, statuses, keyword, size, (page - 1) * size)
    data = [render.segment(s, doc.uuid) for s in segs]
    return {"data": data, "doc_form": doc_form(doc), "total": total, "has_more": len(data) == limit, "limit": limit,
            "page": page}  # fmt: skip


@router.get("/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}")
async def get_segment(dataset_id: str, document_id: str, segment_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc, seg = await _segment_of(core, ds, document_id, segment_id)
    return {"data": render.segment(seg, doc.uuid), "doc_form": doc_form(doc)}


@router.post("/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}")
async def update_segment(
    request: Request, dataset_id: str, document_id: str, segment_id: str, auth: AuthDep, core: CoreDep
) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc, seg = await _segment_of(core, ds, document_id, segment_id)
    body = await json_object(request)
    args = body.get("segment")
    if not isinstance(args, dict):
        raise invalid_param("segment is required.")
    updated = await run_write(request, core.dify_segments.update_segment, ds, doc, seg, args)
    return {"data": render.segment(updated, doc.uuid), "doc_form": doc_form(doc)}


@router.delete("/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}", status_code=204)
async def delete_segment(dataset_id: str, document_id: str, segment_id: str, auth: AuthDep, core: CoreDep) -> Response:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc, seg = await _segment_of(core, ds, document_id, segment_id)
    await run_sync(core.dify_segments.delete_segment, ds, doc, seg)
    return Response(status_code=204)


# --- child chunks ------------------------------------------------------------------------------------------------
CHILDREN = "/datasets/{dataset_id}/documents/{document_id}/segments/{segment_id}/child_chunks"


@router.post(CHILDREN)
async def create_child(
    request: Request, dataset_id: str, document_id: str, segment_id: str, auth: AuthDep, core: CoreDep
) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc, seg = await _segment_of(core, ds, document_id, segment_id)
    child = await run_write(request, core.dify_segments.create_child, ds, doc, seg, await json_object(request))
    return {"data": render.child_chunk(child, seg.uuid)}


@router.get(CHILDREN)
async def list_children(
    request: Request, dataset_id: str, document_id: str, segment_id: str, auth: AuthDep, core: CoreDep
) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    _, seg = await _segment_of(core, ds, document_id, segment_id)
    page, limit = page_params(request)
    limit = min(limit, 100)
    keyword = (request.query_params.get("keyword") or "").lower()
    found = [c for c in seg.children if keyword in c.content.lower()]
    window = found[(page - 1) * limit : page * limit]
    return {"data": [render.child_chunk(c, seg.uuid) for c in window], "total": len(found),
            "total_pages": (len(found) + limit - 1) // limit, "page": page, "limit": limit}  # fmt: skip


@router.patch(CHILDREN + "/{child_id}")
async def update_child(
    request: Request, dataset_id: str, document_id: str, segment_id: str, child_id: str, auth: AuthDep, core: CoreDep
) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc, seg = await _segment_of(core, ds, document_id, segment_id)
    child = core.dify_segments.child(seg, child_id)
    updated = await run_write(request, core.dify_segments.update_child, ds, doc, child, await json_object(request))
    return {"data": render.child_chunk(updated, seg.uuid)}


@router.delete(CHILDREN + "/{child_id}", status_code=204)
async def delete_child(
    dataset_id: str, document_id: str, segment_id: str, child_id: str, auth: AuthDep, core: CoreDep
) -> Response:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc, seg = await _segment_of(core, ds, document_id, segment_id)
    child = core.dify_segments.child(seg, child_id)
    await run_sync(core.dify_segments.delete_child, ds, doc, child)
    return Response(status_code=204)


# --- retrieval ---------------------------------------------------------------------------------------------------
RETRIEVAL_REQUIRED = ("search_method", "reranking_enable", "top_k", "score_threshold_enabled")


async def _retrieve(request: Request, dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    body = await json_object(request)
    query = body.get("query")
    if query is not None and not isinstance(query, str):
        raise invalid_param("query must be a string.")
    if not query and not body.get("attachment_ids"):
        raise invalid_param("Query or attachment_ids is required")
    if query and len(query) > MAX_QUERY_CHARS:
        raise invalid_param(f"Query cannot exceed {MAX_QUERY_CHARS} characters.")
    model = body.get("retrieval_model")
    if model is not None:
        if not isinstance(model, dict):
            raise invalid_param("retrieval_model must be an object.")
        missing = [k for k in RETRIEVAL_REQUIRED if k not in model]
        if missing:
            raise invalid_param(f"retrieval_model is missing {', '.join(missing)}.")
    else:
        model = ds.dify.get("retrieval_model") or {"search_method": "semantic_search", "top_k": 4}
    try:
        metadata = parse_metadata_filter(model.get("metadata_filtering_conditions"))
    except MetadataFilterError as exc:
        raise invalid_param(str(exc)) from exc
    records = await run_sync(core.dify_retrieval.retrieve, ds, query or "", model, metadata)
    fields = await run_sync(fields_of, core, ds)
    return {"query": {"content": query or ""}, "records": [render.record(r, fields) for r in records]}


for _path in ("/datasets/{dataset_id}/retrieve", "/datasets/{dataset_id}/hit-testing"):
    router.add_api_route(_path, _retrieve, methods=["POST"], operation_id=op_id("POST", _path))
