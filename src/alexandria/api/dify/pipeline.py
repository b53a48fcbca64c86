"""Dify's knowledge-pipeline routes, answered as Dify answers a dataset that has no pipeline: Alexandria's datasets
are all API-created ("classic") datasets, so the dataset routes say 400 ``invalid_param`` "Pipeline not found" (after
the usual dataset checks), and the file upload stores the file in the workspace and answers 201 with its record."""

from __future__ import annotations

import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from alexandria.api.deps import run_sync
from alexandria.api.dify.common import AuthDep, CoreDep, invalid_param, require_unbound, resolve_dataset
from alexandria.api.dify.documents import read_upload
from alexandria.api.dify.render import CREATED_BY

router = APIRouter(prefix="/v1")

PIPELINE_NOT_FOUND = "Pipeline not found"


@router.post("/datasets/pipeline/file-upload", status_code=201)
async def upload_pipeline_file(request: Request, auth: AuthDep, core: CoreDep) -> JSONResponse:
    require_unbound(auth)  # a workspace-wide write: not for a key bound to one dataset
    upload, _ = await read_upload(request, required=True)
    assert upload is not None
    file = await run_sync(core.dify.save_upload, auth.workspace.id, upload)
    created = datetime.datetime.fromtimestamp(float(file["created_at"]), datetime.UTC).replace(tzinfo=None)
    body: dict[str, Any] = {
        "id": file["id"],
        "name": file["name"],
        "size": file["size"],
        "extension": file["extension"],
        "mime_type": file["mime_type"],
        "created_by": CREATED_BY,
        "created_at": created.isoformat(timespec="seconds"),
    }
    return JSONResponse(body, status_code=201)


async def _no_pipeline(core: CoreDep, auth: AuthDep, dataset_id: str) -> Exception:
    await resolve_dataset(core, auth, dataset_id)  # 404 / 403 first, as Dify's dataset checks come first
    return invalid_param(PIPELINE_NOT_FOUND)


@router.get("/datasets/{dataset_id}/pipeline/datasource-plugins")
async def datasource_plugins(dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    raise await _no_pipeline(core, auth, dataset_id)


@router.post("/datasets/{dataset_id}/pipeline/datasource/nodes/{node_id}/run")
async def run_datasource_node(dataset_id: str, node_id: str, auth: AuthDep, core: CoreDep) -> Any:
    raise await _no_pipeline(core, auth, dataset_id)


@router.post("/datasets/{dataset_id}/pipeline/run")
async def run_pipeline(dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    raise await _no_pipeline(core, auth, dataset_id)
