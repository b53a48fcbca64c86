"""Dify document routes: create and update by text or file (both spellings), list, get, delete, indexing status,
batch status changes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from alexandria.api.admission import run_write
from alexandria.api.deps import run_sync
from alexandria.api.dify import render
from alexandria.api.dify.common import (
    AuthDep,
    CoreDep,
    get_str,
    invalid_param,
    json_object,
    op_id,
    page_params,
    parse_json_param,
    resolve_dataset,
)
from alexandria.api.dify.errors import dify_error
from alexandria.api.edge import text_error
from alexandria.domain.models import DataSource, Document
from alexandria.errors import AlexandriaError
from alexandria.ingest.dify_rules import ProcessRuleError, parse_process_rule
from alexandria.services.core import Core
from alexandria.services.dify import DocumentOptions, FileUpload

router = APIRouter(prefix="/v1")

DISPLAY_STATUSES = ("queuing", "indexing", "paused", "error", "available", "disabled", "archived")
STATUS_ALIASES = {"active": "available", "enabled": "available"}


def options(body: dict[str, Any], core: Core) -> DocumentOptions:
    """The processing options of a create/update body (Dify's KnowledgeConfig), validated."""
    rule = None
    if body.get("process_rule") is not None:
        try:
            rule = parse_process_rule(
                body["process_rule"], max_segmentation_tokens=core.settings.dify_max_segmentation_tokens
            )
        except ProcessRuleError as exc:
            raise invalid_param(str(exc)) from exc
    doc_form = get_str(body, "doc_form")
    language = get_str(body, "doc_language") or "English"
    technique = get_str(body, "indexing_technique")
    retrieval = body.get("retrieval_model")
    if retrieval is not None and not isinstance(retrieval, dict):
        raise invalid_param("retrieval_model must be an object.")
    return DocumentOptions(rule, doc_form, language, technique, retrieval)


def fields_of(core: Core, ds: DataSource) -> list[Any]:
    return [f for f, _ in core.dify_meta.fields(ds)]


async def doc_answer(core: Core, ds: DataSource, doc: Document, batch: str) -> dict[str, Any]:
    fields = await run_sync(fields_of, core, ds)
    return {"document": render.document(doc, fields), "batch": batch}


async def resolve_document(
    core: Core, ds: DataSource, document_id: str, message: str = "Document not found."
) -> Document:
    return await run_sync(core.dify.document, ds, document_id, message)


# --- create / update by text -------------------------------------------------------------------------------------
async def _create_by_text(request: Request, dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    body = await json_object(request)
    name = get_str(body, "name", required=True)
    text = get_str(body, "text", required=True)
    opts = options(body, core)
    if original := get_str(body, "original_document_id"):  # Dify updates that document in its existing batch
        doc = await resolve_document(core, ds, original)
        doc, batch = await run_sync(core.dify.update_by_text, ds, doc, name, text, opts)
    else:
        ds, doc, batch = await run_sync(core.dify.create_by_text, ds, str(name), str(text), opts)
    return await doc_answer(core, ds, doc, batch)


async def _update_by_text(request: Request, dataset_id: str, document_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    body = await json_object(request)
    doc = await resolve_document(core, ds, document_id)
    name, text = get_str(body, "name"), get_str(body, "text")
    updated, batch = await run_sync(core.dify.update_by_text, ds, doc, name, text, options(body, core))
    return await doc_answer(core, ds, updated, batch)


for _path in ("/datasets/{dataset_id}/document/create-by-text", "/datasets/{dataset_id}/document/create_by_text"):
    router.add_api_route(_path, _create_by_text, methods=["POST"], operation_id=op_id("POST", _path))
for _path in (
    "/datasets/{dataset_id}/documents/{document_id}/update-by-text",
    "/datasets/{dataset_id}/documents/{document_id}/update_by_text",
):
    router.add_api_route(_path, _update_by_text, methods=["POST"], operation_id=op_id("POST", _path))


# --- create / update by file -------------------------------------------------------------------------------------
async def read_upload(request: Request, *, required: bool) -> tuple[FileUpload | None, dict[str, Any]]:
    """The ``file`` part and the ``data`` JSON of a multipart request, with Dify's upload errors."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        if required:
            raise dify_error(400, "no_file_uploaded", "Please upload your file.")
        return None, {}
    async with request.form() as form:  # closes the parts' temporary files
        files = [v for k, v in form.multi_items() if k == "file" and isinstance(v, UploadFile)]
        data: dict[str, Any] = {}
        raw = form.get("data")
        if isinstance(raw, str) and raw.strip():
            data = parse_json_param(raw, "data")
            if not isinstance(data, dict):
                raise invalid_param("data must be a JSON object.")
        if len(files) > 1:
            raise dify_error(400, "too_many_files", "Only one file is allowed.")
        if not files:
            if required:
                raise dify_error(400, "no_file_uploaded", "Please upload your file.")
            return None, data
        upload = files[0]
        if not upload.filename:
            raise dify_error(400, "filename_not_exists_error", "The specified filename does not exist.")
        if (problem := text_error(upload.filename)) is not None:
            raise invalid_param(f"The file name {problem}")
        return FileUpload(upload.filename, await upload.read()), data


async def _create_by_file(request: Request, dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    upload, data = await read_upload(request, required=True)
    assert upload is not None
    opts = options(data, core)
    original = get_str(data, "original_document_id")
    try:
        if original:  # Dify updates that document in place, in its existing batch
            doc = await resolve_document(core, ds, original)
            doc, batch = await run_sync(core.dify.update_by_file, ds, doc, upload, opts)
        else:
            ds, doc, batch = await run_sync(core.dify.create_by_file, ds, upload, opts)
    except AlexandriaError as exc:  # Dify's create-by-file lets the upload errors through as 400 invalid_param
        if exc.code in ("unsupported_file_type", "file_too_large"):
            raise invalid_param(exc.message) from exc
        raise
    return await doc_answer(core, ds, doc, batch)


async def _update_by_file(request: Request, dataset_id: str, document_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc = await resolve_document(core, ds, document_id)
    upload, data = await read_upload(request, required=False)
    updated, batch = await run_sync(core.dify.update_by_file, ds, doc, upload, options(data, core))
    return await doc_answer(core, ds, updated, batch)


for _path in ("/datasets/{dataset_id}/document/create-by-file", "/datasets/{dataset_id}/document/create_by_file"):
    router.add_api_route(_path, _create_by_file, methods=["POST"], operation_id=op_id("POST", _path))
for _path in (
    "/datasets/{dataset_id}/documents/{document_id}/update-by-file",
    "/datasets/{dataset_id}/documents/{document_id}/update_by_file",
):
    router.add_api_route(_path, _update_by_file, methods=["POST"], operation_id=op_id("POST", _path))
router.add_api_route(
    "/datasets/{dataset_id}/documents/{document_id}",
    _update_by_file,
    methods=["PATCH"],
    operation_id="dify_patch_document",
)


# --- list, get, delete, status -----------------------------------------------------------------------------------
@router.get("/datasets/{dataset_id}/documents")
async def list_documents(request: Request, dataset_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    page, limit = page_params(request)
    keyword = request.query_params.get("keyword") or None
    status = request.query_params.get("status")
    status = STATUS_ALIASES.get(status or "", status)
    if status not in DISPLAY_STATUSES:
        status = None  # unknown values are ignored, as in Dify
    docs, total = await run_sync(core.dify.list_documents, ds, keyword, status, page, limit)
    fields = await run_sync(fields_of, core, ds)
    data = [render.document(d, fields) for d in docs]
    return {"data": data, "has_more": len(data) == limit, "limit": limit, "total": total, "page": page}


@router.get("/datasets/{dataset_id}/documents/{batch}/indexing-status")
async def indexing_status(dataset_id: str, batch: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    docs = await run_sync(core.dify.batch_documents, ds, batch)
    out = []
    for doc in docs:
        total, done = await run_sync(core.dify_segments.progress, doc)
        out.append(render.indexing_state(doc, total, done))
    return {"data": out}


@router.get("/datasets/{dataset_id}/documents/{document_id}")
async def get_document(request: Request, dataset_id: str, document_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    metadata = request.query_params.get("metadata", "all")
    if metadata not in ("all", "only", "without"):
        raise dify_error(400, "invalid_metadata", f"Invalid metadata value: {metadata}")
    doc = await resolve_document(core, ds, document_id)
    fields = await run_sync(fields_of, core, ds)
    segments = await run_sync(core.dify_segments.segments, doc)
    count = len(segments) if doc.dify is not None else doc.chunk_count
    return render.document_detail(doc, fields, count, metadata, ds.uuid)


@router.delete("/datasets/{dataset_id}/documents/{document_id}", status_code=204)
async def delete_document(dataset_id: str, document_id: str, auth: AuthDep, core: CoreDep) -> Response:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc = await resolve_document(core, ds, document_id, "Document Not Exists.")
    await run_sync(core.dify.delete_document, ds, doc)
    return Response(status_code=204)


@router.patch("/datasets/{dataset_id}/documents/status/{action}")
async def document_status(request: Request, dataset_id: str, action: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    body = await json_object(request)
    ids = body.get("document_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise invalid_param("document_ids must be a list of document ids.")
    await run_write(request, core.dify_meta.set_status, ds, action, ids)  # enabling embeds the chunks again
    return {"result": "success"}
