"""Dify dataset routes: ``/v1/datasets`` create, list, get, patch, delete; knowledge tags; metadata fields."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from alexandria.api.deps import run_sync
from alexandria.api.dify import render
from alexandria.api.dify.common import (
    AuthDep,
    CoreDep,
    get_str,
    invalid_param,
    json_object,
    page_params,
    require_unbound,
    resolve_dataset,
)
from alexandria.domain.models import DataSource
from alexandria.services.core import Core
from alexandria.services.dify_meta import BUILT_IN_FIELDS

router = APIRouter(prefix="/v1")

PERMISSIONS = ("only_me", "all_team_members", "partial_members")


def dataset_json(core: Core, ds: DataSource) -> dict[str, Any]:
    counts = core.dify.counts(ds)
    tags = core.dify_meta.dataset_tags(ds)
    fields = [f for f, _ in core.dify_meta.fields(ds)]
    return render.dataset(ds, counts, tags, fields, core.dify.embedding_model_name(ds))


def _check_dataset_body(body: dict[str, Any], *, creating: bool) -> None:
    name = get_str(body, "name", required=creating)
    if name is not None and not 1 <= len(name) <= 40:
        raise invalid_param("Name must be between 1 to 40 characters.")
    desc = body.get("description")
    if desc is not None and (not isinstance(desc, str) or len(desc) > 400):
        raise invalid_param("Description cannot exceed 400 characters.")
    technique = body.get("indexing_technique")
    if technique is not None and technique not in ("high_quality", "economy"):
        raise invalid_param("Invalid indexing technique.")
    permission = body.get("permission")
    if permission is not None and permission not in PERMISSIONS:
        raise invalid_param("Invalid permission.")
    provider = body.get("provider")
    if provider is not None and provider not in ("vendor", "external"):
        raise invalid_param("Invalid provider.")


# --- tags (registered before /datasets/{dataset_id} so "tags" is not taken for an id) ---------------------------
@router.get("/datasets/tags")
async def list_tags(auth: AuthDep, core: CoreDep) -> Any:
    require_unbound(auth)
    tags = await run_sync(core.dify_meta.tags, auth.workspace)
    return [render.tag(t) for t in tags]


@router.post("/datasets/tags")
async def create_tag(request: Request, auth: AuthDep, core: CoreDep) -> Any:
    require_unbound(auth)
    body = await json_object(request)
    return render.tag(await run_sync(core.dify_meta.create_tag, auth.workspace, body.get("name")))


@router.patch("/datasets/tags")
async def update_tag(request: Request, auth: AuthDep, core: CoreDep) -> Any:
    require_unbound(auth)
    body = await json_object(request)
    tag = await run_sync(core.dify_meta.rename_tag, auth.workspace, body.get("tag_id"), body.get("name"))
    return render.tag(tag)


@router.delete("/datasets/tags", status_code=204)
async def delete_tag(request: Request, auth: AuthDep, core: CoreDep) -> Response:
    require_unbound(auth)
    body = await json_object(request)
    await run_sync(core.dify_meta.delete_tag, auth.workspace, body.get("tag_id"))
    return Response(status_code=204)


def _tag_ids(body: dict[str, Any]) -> list[str]:
    ids = body.get("tag_ids")
    if ids is None and isinstance(body.get("tag_id"), str):
        ids = [body["tag_id"]]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise invalid_param("tag_ids must be a non-empty list of tag ids.")
    return ids


@router.post("/datasets/tags/binding", status_code=204)
async def bind_tags(request: Request, auth: AuthDep, core: CoreDep) -> Response:
    body = await json_object(request)
    ds = await resolve_dataset(core, auth, str(get_str(body, "target_id", required=True)))
    await run_sync(core.dify_meta.bind, auth.workspace, ds, _tag_ids(body), True)
    return Response(status_code=204)


@router.post("/datasets/tags/unbinding", status_code=204)
async def unbind_tags(request: Request, auth: AuthDep, core: CoreDep) -> Response:
    body = await json_object(request)
    ds = await resolve_dataset(core, auth, str(get_str(body, "target_id", required=True)))
    await run_sync(core.dify_meta.bind, auth.workspace, ds, _tag_ids(body), False)
    return Response(status_code=204)


# --- datasets ----------------------------------------------------------------------------------------------------
@router.post("/datasets")
async def create_dataset(request: Request, auth: AuthDep, core: CoreDep) -> Any:
    require_unbound(auth)
    body = await json_object(request)
    _check_dataset_body(body, creating=True)
    ds = await run_sync(core.dify.create_dataset, auth.workspace, body)
    return await run_sync(dataset_json, core, ds)


@router.get("/datasets")
async def list_datasets(request: Request, auth: AuthDep, core: CoreDep) -> Any:
    require_unbound(auth)
    page, limit = page_params(request)
    keyword = request.query_params.get("keyword") or None
    tag_ids = request.query_params.getlist("tag_ids")
    include_all = request.query_params.get("include_all", "false").lower() == "true"
    found = await run_sync(core.dify.list_datasets, auth.workspace, keyword, tag_ids, include_all)
    visible = {ds.id for ds in await run_sync(core.access.visible_data_sources, auth)}
    found = [ds for ds in found if ds.id in visible]  # restricted spaces the key is not a member of: hidden
    limit = min(limit, 100)
    window = found[(page - 1) * limit : page * limit]
    data = [await run_sync(dataset_json, core, ds) for ds in window]
    return {"data": data, "has_more": page * limit < len(found), "limit": limit, "total": len(found), "page": page}


@router.get("/datasets/{dataset_id}")
async def get_dataset(dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    out = await run_sync(dataset_json, core, ds)
    if out["permission"] == "partial_members":
        out["partial_member_list"] = ds.dify.get("partial_member_list") or []
    return out


@router.patch("/datasets/{dataset_id}")
async def update_dataset(request: Request, dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    body = await json_object(request)
    _check_dataset_body(body, creating=False)
    ds = await run_sync(core.dify.update_dataset, ds, body)
    out = await run_sync(dataset_json, core, ds)
    out["partial_member_list"] = ds.dify.get("partial_member_list") or []
    return out


@router.delete("/datasets/{dataset_id}", status_code=204)
async def delete_dataset(dataset_id: str, auth: AuthDep, core: CoreDep) -> Response:
    ds = await resolve_dataset(core, auth, dataset_id)
    await run_sync(core.dify.delete_dataset, ds)
    return Response(status_code=204)


@router.get("/datasets/{dataset_id}/tags")
async def dataset_tags(dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    tags = await run_sync(core.dify_meta.dataset_tags, ds)
    return {"data": [{"id": t.uuid, "name": t.name} for t in tags], "total": len(tags)}


# --- metadata fields ---------------------------------------------------------------------------------------------
@router.post("/datasets/{dataset_id}/metadata", status_code=201)
async def create_metadata(request: Request, dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    field = await run_sync(core.dify_meta.create_field, ds, await json_object(request))
    return {"id": field.uuid, "name": field.name, "type": field.type}


@router.get("/datasets/{dataset_id}/metadata")
async def list_metadata(dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    fields = await run_sync(core.dify_meta.fields, ds)
    return {
        "doc_metadata": [{"id": f.uuid, "name": f.name, "type": f.type, "count": n} for f, n in fields],
        "built_in_field_enabled": bool(ds.dify.get("built_in_field_enabled")),
    }


@router.get("/datasets/{dataset_id}/metadata/built-in")
async def built_in_metadata(dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    await resolve_dataset(core, auth, dataset_id)
    return {"fields": [{"name": n, "type": t} for n, t in BUILT_IN_FIELDS]}


@router.post("/datasets/{dataset_id}/metadata/built-in/{action}")
async def toggle_built_in(dataset_id: str, action: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    if action not in ("enable", "disable"):
        raise invalid_param(f"Invalid action: {action}. Must be one of ['enable', 'disable']")
    await run_sync(core.dify_meta.set_built_in, ds, action == "enable")
    return {"result": "success"}


@router.patch("/datasets/{dataset_id}/metadata/{metadata_id}")
async def rename_metadata(request: Request, dataset_id: str, metadata_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    field = await run_sync(core.dify_meta.rename_field, ds, metadata_id, await json_object(request))
    return {"id": field.uuid, "name": field.name, "type": field.type}


@router.delete("/datasets/{dataset_id}/metadata/{metadata_id}", status_code=204)
async def delete_metadata(dataset_id: str, metadata_id: str, auth: AuthDep, core: CoreDep) -> Response:
    ds = await resolve_dataset(core, auth, dataset_id)
    await run_sync(core.dify_meta.delete_field, ds, metadata_id)
    return Response(status_code=204)


@router.post("/datasets/{dataset_id}/documents/metadata")
async def update_documents_metadata(request: Request, dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    body = await json_object(request)
    await run_sync(core.dify_meta.update_documents_metadata, ds, body.get("operation_data"))
    return {"result": "success"}
