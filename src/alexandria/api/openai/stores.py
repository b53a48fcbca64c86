"""OpenAI's vector stores: create, list, retrieve, modify, delete, and search."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from alexandria.api.deps import run_sync
from alexandria.api.openai import render, schemas
from alexandria.api.openai.common import (
    AuthDep,
    CoreDep,
    Page,
    call,
    json_object,
    list_body,
    require_unbound,
    resolve_store,
)
from alexandria.api.openai.errors import bad_request
from alexandria.api.openai.filters import parse_filters
from alexandria.domain.models import Principal, SpaceKind
from alexandria.services.core import Core

router = APIRouter(prefix="/v1", tags=["OpenAI vector stores"])

MAX_CREATE_FILE_IDS = 500
MAX_NAME = 256
RANKERS = ("none", "auto", "default-2024-11-15")


@router.post("/vector_stores", operation_id="openai_create_vector_store")
async def create_store(request: Request, auth: AuthDep, core: CoreDep) -> Any:
    require_unbound(auth)
    body = await json_object(request, required=False)
    name = schemas.optional_str(body, "name", MAX_NAME)
    description = schemas.optional_str(body, "description", 512)
    metadata = schemas.metadata(body.get("metadata"))
    expiry = schemas.expires_after(body.get("expires_after"))
    chunking = schemas.chunking(body.get("chunking_strategy"))
    ids = body.get("file_ids") or []
    if not isinstance(ids, list) or len(ids) > MAX_CREATE_FILE_IDS:
        raise bad_request(
            f"Invalid 'file_ids': expected an array of at most {MAX_CREATE_FILE_IDS} file ids.", "file_ids"
        )
    files = [await call(core.vector_stores.file, auth, schemas.file_uuid(i, "file_ids")) for i in ids]
    global_space = await run_sync(core.catalog.global_space, auth.workspace)
    await call(core.access.require_write, auth, global_space, "This API key may not create vector stores.")
    ds = await call(core.vector_stores.create_store, auth.workspace, name, description, metadata, expiry)
    if files:
        await call(core.vector_stores.attach, ds, [(f, chunking, None) for f in files])
    return render.store(await call(core.vector_stores.info, ds))


def _visible_stores(core: Core, who: Principal) -> list[Any]:
    spaces = {s.id: s for s in core.catalog.spaces(who.workspace)}
    found = [
        ds
        for ds in core.access.visible_data_sources(who)
        if ds.space_id in spaces and spaces[ds.space_id].kind is not SpaceKind.SYSTEM
    ]
    return sorted(found, key=lambda ds: (ds.created_at, ds.id))


@router.get("/vector_stores", operation_id="openai_list_vector_stores")
async def list_stores(request: Request, auth: AuthDep, core: CoreDep) -> Any:
    page = Page(request)
    found = await call(_visible_stores, core, auth)
    items, more = page.slice(found, render.store_id)
    infos = [await call(core.vector_stores.info, ds) for ds in items]
    return list_body([render.store(i) for i in infos], more)


@router.get("/vector_stores/{vector_store_id}", operation_id="openai_retrieve_vector_store")
async def retrieve_store(vector_store_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id)
    return render.store(await call(core.vector_stores.info, ds))


@router.post("/vector_stores/{vector_store_id}", operation_id="openai_modify_vector_store")
async def modify_store(request: Request, vector_store_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id, write=True)
    body = await json_object(request, required=False)
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = schemas.optional_str(body, "name", MAX_NAME)
    if "metadata" in body:
        changes["metadata"] = schemas.metadata(body.get("metadata"))
    if "expires_after" in body:
        changes["expires_after"] = schemas.expires_after(body.get("expires_after"))
    if changes:
        ds = await call(core.vector_stores.update_store, ds, changes)
    return render.store(await call(core.vector_stores.info, ds))


@router.delete("/vector_stores/{vector_store_id}", operation_id="openai_delete_vector_store")
async def delete_store(vector_store_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id, write=True)
    await call(core.vector_stores.delete_store, ds)
    return {"id": vector_store_id, "object": "vector_store.deleted", "deleted": True}


# --- search ------------------------------------------------------------------------------------------------------
def _queries(value: object) -> list[str]:
    if isinstance(value, str):
        queries = [value]
    elif isinstance(value, list) and value and all(isinstance(q, str) for q in value):
        queries = list(value)
    else:
        raise bad_request("Invalid 'query': expected a string or a non-empty array of strings.", "query")
    if not any(q.strip() for q in queries):
        raise bad_request("Invalid 'query': the query is empty.", "query")
    return queries


def _ranking(value: object) -> float:
    """``ranking_options``: the ranker (accepted; ``none`` and ``auto`` both rank with the hybrid search) and the
    ``score_threshold`` on the normalised score."""
    if value is None:
        return 0.0
    if not isinstance(value, dict):
        raise bad_request("Invalid type for 'ranking_options': expected an object.", "ranking_options")
    ranker = value.get("ranker", "auto")
    if ranker not in RANKERS:
        raise bad_request(f"Invalid 'ranking_options.ranker': expected one of {', '.join(RANKERS)}.", "ranking_options")
    threshold = value.get("score_threshold", 0.0)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise bad_request(
            "Invalid 'ranking_options.score_threshold': expected a number from 0 to 1.", "ranking_options"
        )
    return float(threshold)


@router.post("/vector_stores/{vector_store_id}/search", operation_id="openai_search_vector_store")
async def search(request: Request, vector_store_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id)
    body = await json_object(request)
    if "query" not in body:
        raise bad_request("Missing required parameter: 'query'.", "query")
    queries = _queries(body["query"])
    k = body.get("max_num_results", 10)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 50:
        raise bad_request(f"Invalid 'max_num_results': integer must be between 1 and 50, got {k!r}.", "max_num_results")
    rewrite = body.get("rewrite_query", False)
    if not isinstance(rewrite, bool):
        raise bad_request("Invalid type for 'rewrite_query': expected a boolean.", "rewrite_query")
    threshold = _ranking(body.get("ranking_options"))
    metadata = parse_filters(body.get("filters"))
    hits = await call(core.vector_stores.search, ds, queries, metadata, k, threshold)
    return render.search_page(queries, hits)
