"""OpenAI's Files API: upload (multipart), list, retrieve, delete, download the content."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from alexandria.api.edge import text_error
from alexandria.api.openai import render, schemas
from alexandria.api.openai.common import AuthDep, CoreDep, Page, call, list_body
from alexandria.api.openai.errors import bad_request

router = APIRouter(prefix="/v1", tags=["OpenAI files"])

MAX_FILES_PAGE = 10_000


@router.post("/files", operation_id="openai_create_file")
async def create_file(request: Request, auth: AuthDep, core: CoreDep) -> Any:
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise bad_request("Expected a multipart/form-data body with 'file' and 'purpose'.", "file")
    async with request.form() as form:
        uploads = [v for k, v in form.multi_items() if k == "file" and isinstance(v, UploadFile)]
        if len(uploads) != 1:
            raise bad_request("Expected exactly one 'file' part.", "file")
        purpose = schemas.purpose(form.get("purpose"))
        raw_expiry = form.get("expires_after[anchor]")
        if raw_expiry is not None and raw_expiry != "created_at":
            raise bad_request("Invalid 'expires_after.anchor': expected 'created_at'.", "expires_after")
        upload = uploads[0]
        name = upload.filename or ""
        if not name or (problem := text_error(name)) is not None:
            raise bad_request(f"Invalid file name: {'it is empty' if not name else problem}.", "file")
        data = await upload.read()
    f = await call(core.vector_stores.create_file, auth, name, data, purpose)
    return render.file(f)


@router.get("/files", operation_id="openai_list_files")
async def list_files(request: Request, auth: AuthDep, core: CoreDep) -> Any:
    page = Page(request, default_limit=MAX_FILES_PAGE, max_limit=MAX_FILES_PAGE)
    purpose = request.query_params.get("purpose") or None
    found = await call(core.vector_stores.list_files, auth, purpose)
    items, more = page.slice(found, lambda f: f.file_id)
    return list_body([render.file(f) for f in items], more)


@router.get("/files/{file_id}", operation_id="openai_retrieve_file")
async def retrieve_file(file_id: str, auth: AuthDep, core: CoreDep) -> Any:
    return render.file(await call(core.vector_stores.file, auth, schemas.file_uuid(file_id)))


@router.delete("/files/{file_id}", operation_id="openai_delete_file")
async def delete_file(file_id: str, auth: AuthDep, core: CoreDep) -> Any:
    f = await call(core.vector_stores.file, auth, schemas.file_uuid(file_id))
    await call(core.vector_stores.delete_file, auth.workspace, f)
    return {"id": f.file_id, "object": "file", "deleted": True}


@router.get("/files/{file_id}/content", operation_id="openai_download_file")
async def file_content(file_id: str, auth: AuthDep, core: CoreDep) -> Response:
    f = await call(core.vector_stores.file, auth, schemas.file_uuid(file_id))
    data = await call(core.vector_stores.file_data, f)
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(f.name)}"}
    return Response(data, media_type=f.mime_type, headers=headers)
