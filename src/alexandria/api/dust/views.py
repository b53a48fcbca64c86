"""Dust data source views, folders and tokenize (dust-behaviour.md §2.3, §2.9, §6.2)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import StrictFloat, StrictInt, StrictStr

from alexandria.api.deps import run_sync
from alexandria.api.dust import render
from alexandria.api.dust.common import (
    AuthDep,
    CoreDep,
    checked,
    paths,
    read_object,
    require_unmanaged,
    require_write,
    resolve_data_source,
    resolve_space,
    validate,
)
from alexandria.api.dust.errors import dust_error
from alexandria.api.dust.routes import parse_search
from alexandria.api.dust.schemas import _Body
from alexandria.domain.filters import FilterSet
from alexandria.domain.models import DataSource, DataSourceView, Principal, Space
from alexandria.services.access import AccessService
from alexandria.services.core import Core
from alexandria.services.folders import FolderRequest
from alexandria.services.spaces import view_filter

router = APIRouter(prefix="/api/v1/w/{wId}")

VIEW_NOT_FOUND = (404, "data_source_view_not_found", "The data source view you requested was not found.")


async def _view(core: Core, auth: Principal, space_id: str, view_id: str) -> tuple[Space, DataSourceView, DataSource]:
    return await checked(core.access.view, auth, space_id, view_id)


async def _render_views(core: Core, views: list[DataSourceView]) -> list[dict[str, Any]]:
    out = []
    for v in views:
        ds = await run_sync(core.catalog.data_source_by_id, v.data_source_id)
        space = await run_sync(core.catalog.space_by_id, v.space_id)
        if ds is not None and space is not None:
            out.append(render.view(v, ds, space.sid))
    return out


@router.get("/spaces/{spaceId}/data_source_views")
async def list_views(auth: AuthDep, core: CoreDep, spaceId: str) -> JSONResponse:
    space = await resolve_space(core, auth, spaceId)
    views = await run_sync(core.access.visible_views, auth, space)
    return JSONResponse({"dataSourceViews": await _render_views(core, views)})


@router.get("/spaces/{spaceId}/data_source_views/{dsvId}")
async def get_view(auth: AuthDep, core: CoreDep, spaceId: str, dsvId: str) -> JSONResponse:
    space, view, ds = await _view(core, auth, spaceId, dsvId)
    return JSONResponse({"dataSourceView": render.view(view, ds, space.sid)})


def _string_list(raw: dict[str, Any], key: str) -> list[str] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise dust_error(400, "invalid_request_error", f'Invalid request body: Expected string[] at "{key}"')
    return value


@router.patch("/spaces/{spaceId}/data_source_views/{dsvId}")
async def patch_view(request: Request, auth: AuthDep, core: CoreDep, spaceId: str, dsvId: str) -> JSONResponse:
    """Both body forms: ``{parentsToAdd?, parentsToRemove?}`` and ``{parentsIn}``. Unlike Dust (where a zod union
    makes ``{parentsIn}`` a silent no-op), ``parentsIn`` replaces the view's parents, as its name says."""
    space, view, ds = await _view(core, auth, spaceId, dsvId)
    await checked(AccessService.require_admin, auth, space, "Only admins can update data source views.")
    raw = await read_object(request)
    parents_in = _string_list(raw, "parentsIn")
    to_add = _string_list(raw, "parentsToAdd")
    to_remove = _string_list(raw, "parentsToRemove")
    if "parentsIn" in raw and parents_in is None:
        raise dust_error(400, "invalid_request_error", 'Invalid request body: Expected string[] at "parentsIn"')
    if parents_in is not None and (to_add is not None or to_remove is not None):
        raise dust_error(
            400,
            "invalid_request_error",
            "Invalid request body: send either `parentsIn` or `parentsToAdd`/`parentsToRemove`, not both.",
        )
    updated = await run_sync(
        core.spaces.patch_view, view, ds, parents_in=parents_in, to_add=to_add or (), to_remove=to_remove or ()
    )
    return JSONResponse({"dataSourceView": render.view(updated, ds, space.sid)})


@router.get("/spaces/{spaceId}/data_source_views/{dsvId}/search")
async def search_view(request: Request, auth: AuthDep, core: CoreDep, spaceId: str, dsvId: str) -> JSONResponse:
    """Search through a view: the request's filters AND the view's restriction to its parents."""
    _, view, ds = await _view(core, auth, spaceId, dsvId)
    req = parse_search(request)
    req = dataclasses.replace(req, filters=FilterSet((*req.filters.filters, view_filter(view))))
    results = await run_sync(core.search.search, ds, req)
    return JSONResponse(render.search_results(ds, results, req.full_text))


@router.get("/data_source_views/search")
async def search_views(request: Request, auth: AuthDep, core: CoreDep) -> JSONResponse:
    """The SDK's ``searchDataSourceViews`` (system keys only): views filtered by ``dataSourceId``, ``kind``,
    ``vaultId`` (space sId) and ``vaultKind``."""
    if not auth.is_system:
        raise dust_error(*VIEW_NOT_FOUND)
    q = request.query_params
    views = await run_sync(core.access.visible_views, auth)
    rendered = await _render_views(core, views)
    if q.get("dataSourceId"):
        rendered = [v for v in rendered if v["dataSource"]["sId"] == q["dataSourceId"]]
    if q.get("kind"):
        rendered = [v for v in rendered if v["kind"] == q["kind"]]
    if q.get("vaultId"):
        rendered = [v for v in rendered if v["spaceId"] == q["vaultId"]]
    if q.get("vaultKind"):
        spaces = {s.sid: s for s in await run_sync(core.catalog.spaces, auth.workspace)}
        rendered = [v for v in rendered if spaces[v["spaceId"]].kind.value == q["vaultKind"]]
    return JSONResponse({"data_source_views": rendered})


# --- folders -----------------------------------------------------------------------------------------------------
class FolderBody(_Body):
    timestamp: StrictInt | StrictFloat
    title: StrictStr
    mime_type: StrictStr
    parents: list[StrictStr] | None = None
    parent_id: StrictStr | None = None
    source_url: StrictStr | None = None
    provider_visibility: StrictStr | None = None


async def upsert_folder(
    request: Request, auth: AuthDep, core: CoreDep, dsId: str, folderId: str, spaceId: str | None = None
) -> JSONResponse:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_unmanaged(auth, ds, "You cannot upsert a folder on a managed data source.")
    require_write(auth, space)
    core.rate_limits.check_upsert(auth, "upsert-folder")
    raw = await read_object(request)
    body = validate(FolderBody, raw)
    for field in ("parents", "parent_id"):
        if not auth.is_system and raw.get(field) is not None:
            raise dust_error(
                400,
                "invalid_request_error",
                f"Setting a custom hierarchy is not supported yet. Please omit the {field} field.",
            )
    req = FolderRequest(
        folder_id=folderId,
        title=body.title,
        mime_type=body.mime_type,
        timestamp=body.timestamp,
        parents=tuple(body.parents) if body.parents is not None else None,
        parent_id=body.parent_id,
        source_url=body.source_url,
        provider_visibility=body.provider_visibility,
    )
    folder = await run_sync(core.folders.upsert, ds, req, int(time.time() * 1000))
    return JSONResponse({"folder": render.folder(ds, folder), "data_source": render.data_source(ds)})


async def get_folder(
    auth: AuthDep, core: CoreDep, dsId: str, folderId: str, spaceId: str | None = None
) -> JSONResponse:
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    folder = await run_sync(core.folders.get, ds, folderId)
    if folder is None:
        raise dust_error(
            404,
            "data_source_error",
            "The folder was not found.",
            {"code": "data_source_folder_not_found", "message": f"No folder found for id `{folderId}`"},
        )
    return JSONResponse({"folder": render.folder(ds, folder)})


async def list_folders(auth: AuthDep, core: CoreDep, dsId: str, spaceId: str | None = None) -> JSONResponse:
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    folders = await run_sync(core.folders.list, ds)
    return JSONResponse({"folders": [render.folder(ds, f) for f in folders]})


async def delete_folder(
    auth: AuthDep, core: CoreDep, dsId: str, folderId: str, spaceId: str | None = None
) -> JSONResponse:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_unmanaged(auth, ds, "You cannot delete a folder from a managed data source.")
    require_write(auth, space)
    await run_sync(core.folders.delete, ds, folderId)
    return JSONResponse({"folder": {"folder_id": folderId}})


for _path in paths("/folders/{folderId:path}"):
    router.add_api_route(_path, upsert_folder, methods=["POST"])
    router.add_api_route(_path, get_folder, methods=["GET"])
    router.add_api_route(_path, delete_folder, methods=["DELETE"])
for _path in paths("/folders"):
    router.add_api_route(_path, list_folders, methods=["GET"])


# --- tokenize ----------------------------------------------------------------------------------------------------
async def tokenize(
    request: Request, auth: AuthDep, core: CoreDep, dsId: str, spaceId: str | None = None
) -> JSONResponse:
    """``{"tokens": [[id, piece], ...]}`` with the data source's own embedding tokenizer."""
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    raw = await read_object(request)
    text = raw.get("text")
    if not isinstance(text, str):
        raise dust_error(400, "invalid_request_error", 'Invalid request body: Expected string, received at "text"')
    limit = int(core.settings.max_document_mb * 1024 * 1024)
    if len(text) > limit:
        raise dust_error(
            403,
            "data_source_quota_error",
            f"Tokenize input is limited to {core.settings.max_document_mb:g}MB; you sent {len(text)} characters.",
        )
    tokenizer = core.embedders.get(ds.embedder).tokenizer
    tokens = await run_sync(tokenizer.tokenize, text)
    return JSONResponse({"tokens": [[tid, piece] for tid, piece in tokens]})


for _path in paths("/tokenize"):
    router.add_api_route(_path, tokenize, methods=["POST"])
