"""Dust's Data Sources API (``/api/v1/w/{wId}/...``), translated to the core."""

from __future__ import annotations

import time
from urllib.parse import urlparse

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from alexandria.api.admission import run_write
from alexandria.api.deps import run_sync
from alexandria.api.dust import render
from alexandria.api.dust.common import (
    AuthDep,
    CoreDep,
    int_param,
    number_param,
    paths,
    read_object,
    require_unmanaged,
    require_write,
    resolve_data_source,
    resolve_space,
    validate,
)
from alexandria.api.dust.errors import dust_error
from alexandria.api.dust.schemas import ParentsBody, SectionBody, UpsertDocumentBody
from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.domain.models import SearchMode
from alexandria.ingest.chunkers import Section
from alexandria.services.documents import UpsertRequest, check_parents
from alexandria.services.search import SearchRequest

router = APIRouter(prefix="/api/v1/w/{wId}")


# --- spaces and data sources -------------------------------------------------------------------------------------
@router.get("/spaces")
async def list_spaces(request: Request, auth: AuthDep, core: CoreDep) -> JSONResponse:
    """The spaces the key can read (Dust PR #9825), optionally only of ``?kinds=a,b``."""
    return JSONResponse({"spaces": await _visible_spaces(request, auth, core)})


@router.get("/vaults")
async def list_vaults(request: Request, auth: AuthDep, core: CoreDep) -> JSONResponse:
    """The legacy name of spaces: ``{"vaults": [...]}``."""
    return JSONResponse({"vaults": await _visible_spaces(request, auth, core)})


async def _visible_spaces(request: Request, auth: AuthDep, core: CoreDep) -> list[dict[str, object]]:
    spaces = await run_sync(core.access.visible_spaces, auth)
    kinds = {k for k in (request.query_params.get("kinds") or "").split(",") if k}
    return [render.space(s) for s in spaces if not kinds or s.kind.value in kinds]


@router.get("/spaces/{spaceId}/data_sources")
async def list_data_sources(auth: AuthDep, core: CoreDep, spaceId: str) -> JSONResponse:
    space = await resolve_space(core, auth, spaceId)
    items = await run_sync(core.access.visible_data_sources, auth, space)
    return JSONResponse({"data_sources": [render.data_source(d) for d in items]})


@router.get("/data_sources")
async def list_data_sources_legacy(auth: AuthDep, core: CoreDep) -> JSONResponse:
    space = await run_sync(core.catalog.global_space, auth.workspace)
    items = await run_sync(core.access.visible_data_sources, auth, space)
    return JSONResponse({"data_sources": [render.data_source(d) for d in items]})


# --- documents ---------------------------------------------------------------------------------------------------
def _to_section(body: SectionBody) -> Section:
    return Section(body.prefix, body.content, tuple(_to_section(s) for s in body.sections))


async def get_document(
    auth: AuthDep, core: CoreDep, dsId: str, documentId: str, spaceId: str | None = None
) -> JSONResponse:
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    doc = await run_sync(core.documents.get, ds, documentId)
    if doc is None:
        raise dust_error(
            400,
            "data_source_error",
            "There was an error retrieving the data source document.",
            {"code": "data_source_document_not_found", "message": f"No document found for id `{documentId}`"},
        )
    return JSONResponse({"document": render.document(ds, doc, with_text=True)})


async def upsert_document(
    request: Request, auth: AuthDep, core: CoreDep, dsId: str, documentId: str, spaceId: str | None = None
) -> JSONResponse:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_unmanaged(auth, ds, "You cannot upsert a document on a managed data source.")
    require_write(auth, space)
    core.rate_limits.check_upsert(auth)
    raw = await read_object(request)
    body = validate(UpsertDocumentBody, raw)
    if raw.get("async") not in (None, False, True):
        raise dust_error(400, "invalid_request_error", "Invalid request body: `async` must be a boolean.")
    source_url = None
    if body.source_url is not None:
        source_url = _clean_url(body.source_url)
    if body.text is not None:
        section = Section(None, body.text, ())
    elif body.section is not None:
        section = _to_section(body.section)
    else:
        raise dust_error(400, "invalid_request_error", "Invalid request body, `text` or `section` must be provided.")
    if not auth.is_system and body.parents is not None:
        raise dust_error(
            400,
            "invalid_request_error",
            "Setting a custom hierarchy is not supported yet. Please omit the parents field.",
        )
    if not auth.is_system and body.parent_id is not None:
        raise dust_error(
            400,
            "invalid_request_error",
            "Setting a custom hierarchy is not supported yet. Please omit the parent_id field.",
        )
    parent_id = body.parent_id
    if body.parents is not None:
        if parent_id is None and "parent_id" not in raw and len(body.parents) >= 2:
            parent_id = body.parents[1]
        check_parents(documentId, body.parents, parent_id, explicit_parent_id=True)
    req = UpsertRequest(
        document_id=documentId,
        section=section,
        title=body.title,
        mime_type=body.mime_type,
        source_url=source_url,
        timestamp=body.timestamp,
        tags=tuple(body.tags or ()),
        parents=tuple(body.parents) if body.parents is not None else None,
        parent_id=parent_id,
    )
    if raw.get("async") is True:
        # validated and stored as pending with its index job, in one transaction; a worker embeds it later
        await run_sync(core.documents.upsert_async, ds, req, int(time.time() * 1000))
        return JSONResponse({"document": {"document_id": documentId}})
    result = await run_write(request, core.documents.upsert, ds, req, int(time.time() * 1000))
    doc = result.document
    if body.light_document_output:
        return JSONResponse({"document": render.light_document(doc), "data_source": render.data_source(ds)})
    chunks = await run_sync(core.search.document_chunks, doc)
    return JSONResponse({"document": render.document(ds, doc, chunks), "data_source": render.data_source(ds)})


def _clean_url(value: str) -> str:
    message = "Invalid request body, `source_url` if provided must be a valid URL."
    try:
        parsed = urlparse(value)
    except ValueError as exc:
        raise dust_error(400, "invalid_request_error", message) from exc
    if parsed.scheme not in ("http", "https") or not parsed.netloc or "//" in parsed.path:
        raise dust_error(400, "invalid_request_error", message)
    return parsed._replace(path=parsed.path or "/").geturl()


async def delete_document(
    auth: AuthDep, core: CoreDep, dsId: str, documentId: str, spaceId: str | None = None
) -> JSONResponse:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_unmanaged(auth, ds, "You cannot delete a document from a managed data source.")
    require_write(auth, space)
    await run_sync(core.documents.delete, ds, documentId)
    return JSONResponse({"document": {"document_id": documentId}})


async def list_documents(
    request: Request, auth: AuthDep, core: CoreDep, dsId: str, spaceId: str | None = None
) -> JSONResponse:
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    q = request.query_params
    limit = int_param(q.get("limit"), "limit", 10)
    offset = int_param(q.get("offset"), "offset", 0)
    ids = q.getlist("document_ids") or None
    docs, total = await run_sync(core.documents.list, ds, ids, limit, offset)
    return JSONResponse({"documents": [render.document(ds, d) for d in docs], "total": total})


async def update_parents(
    request: Request, auth: AuthDep, core: CoreDep, dsId: str, documentId: str, spaceId: str | None = None
) -> JSONResponse:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_write(auth, space)
    raw = await read_object(request)
    if not isinstance(raw.get("parents"), list):
        raise dust_error(400, "invalid_request_error", "Invalid request body, `parents` (string[]) is required.")
    body = validate(ParentsBody, raw)
    parent_id = body.parent_id
    if parent_id is None and "parent_id" not in raw and len(body.parents) >= 2:
        parent_id = body.parents[1]
    updated = await run_sync(core.documents.update_parents, ds, documentId, body.parents, parent_id)
    if not updated:
        raise dust_error(
            400,
            "data_source_error",
            "There was an error updating the document parents.",
            {"code": "data_source_document_not_found", "message": f"No document found for id `{documentId}`"},
        )
    return JSONResponse({"updated": True})


# --- search ------------------------------------------------------------------------------------------------------
def parse_search(request: Request) -> SearchRequest:
    q = request.query_params
    if "query" not in q:
        raise dust_error(
            400, "invalid_request_error", 'Invalid query parameters: Validation error: Required at "query"'
        )
    top_k = number_param(q.get("top_k"), "top_k")
    if top_k is None:
        raise dust_error(
            400, "invalid_request_error", 'Invalid query parameters: Expected number, received nan at "top_k"'
        )
    full_text = "full_text" in q and q["full_text"].lower() not in ("false", "0")
    mode_value = q.get("search_mode") or q.get("mode") or SearchMode.HYBRID.value
    try:
        mode = SearchMode(mode_value)
    except ValueError as exc:
        raise dust_error(
            400, "invalid_request_error", "Invalid query parameters: `search_mode` must be keyword, vector or hybrid."
        ) from exc

    def many(name: str) -> tuple[str, ...] | None:
        values = q.getlist(name)
        return tuple(values) if values else None

    flt = DocumentFilter(
        tags_in=many("tags_in"),
        tags_not=many("tags_not"),
        parents_in=many("parents_in"),
        parents_not=many("parents_not"),
        timestamp_gt=number_param(q.get("timestamp_gt"), "timestamp_gt"),
        timestamp_lt=number_param(q.get("timestamp_lt"), "timestamp_lt"),
    )
    return SearchRequest(
        query=q["query"],
        top_k=top_k,
        mode=mode,
        filters=FilterSet((flt,)),
        full_text=full_text,
        target_document_tokens=number_param(q.get("target_document_tokens"), "target_document_tokens"),
    )


async def search(request: Request, auth: AuthDep, core: CoreDep, dsId: str, spaceId: str | None = None) -> JSONResponse:
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    req = parse_search(request)
    results = await run_sync(core.search.search, ds, req)
    return JSONResponse(render.search_results(ds, results, req.full_text))


async def check_upsert_queue(auth: AuthDep, core: CoreDep, dsId: str, spaceId: str | None = None) -> JSONResponse:
    """Queued and running index jobs of the data source (connectors poll it for back-pressure); system keys only."""
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    if not auth.is_system:
        raise dust_error(403, "data_source_auth_error", "Only system keys can check the upsert queue.")
    return JSONResponse({"running_count": await run_sync(core.jobs.running_count, ds)})


# Document ids are free strings and may contain "/" (percent-encoded by clients, decoded before routing), so the id
# is a path parameter; the `/parents` route is registered first so that it wins for POST .../{id}/parents.
for _path in paths("/documents/{documentId:path}/parents"):
    router.add_api_route(_path, update_parents, methods=["POST"])
for _path in paths("/documents/{documentId:path}"):
    router.add_api_route(_path, get_document, methods=["GET"])
    router.add_api_route(_path, upsert_document, methods=["POST"])
    router.add_api_route(_path, delete_document, methods=["DELETE"])
for _path in paths("/documents"):
    router.add_api_route(_path, list_documents, methods=["GET"])
for _path in paths("/search"):
    router.add_api_route(_path, search, methods=["GET"])
for _path in paths("/check_upsert_queue"):
    router.add_api_route(_path, check_upsert_queue, methods=["GET"])
