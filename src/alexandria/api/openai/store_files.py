"""A vector store's files and file batches: attach (queued for indexing by the durable queue), list with a status
filter, retrieve (with the ``openai-poll-after-ms`` hint while in progress), update attributes, detach, read the
parsed content; create, retrieve, cancel a batch and list its files."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from alexandria.api.errors import DialectError
from alexandria.api.openai import render, schemas
from alexandria.api.openai.common import AuthDep, CoreDep, Page, call, json_object, list_body, resolve_store
from alexandria.api.openai.errors import bad_request, not_found
from alexandria.domain.models import DataSource, Document, Principal
from alexandria.domain.openai import BATCH_PREFIX, FILE_STATUSES, strip_prefix
from alexandria.services.core import Core
from alexandria.services.openai_stores import Chunking, file_status

router = APIRouter(prefix="/v1", tags=["OpenAI vector store files"])

POLL_AFTER_MS = "250"
MAX_BATCH_FILES = 2000
VS = "/vector_stores/{vector_store_id}"


def _poll_hint(response: Response, status: str) -> None:
    if status == "in_progress":
        response.headers["openai-poll-after-ms"] = POLL_AFTER_MS


async def _vs_file(core: Core, ds: DataSource, file_id: str) -> Document:
    try:
        return await call(core.vector_stores.vs_file, ds, schemas.file_uuid(file_id))
    except DialectError as exc:
        if exc.status != 404:
            raise
        raise not_found(f"No file found with id '{file_id}' in vector store '{render.store_id(ds)}'.") from exc


async def _files_to_attach(
    core: Core, who: Principal, entries: list[tuple[object, object, object]], param: str
) -> list[tuple[Any, Chunking, dict[str, Any] | None]]:
    """Validate every file (visible to the key), chunking strategy and attributes before anything is written."""
    out = []
    for raw_id, raw_chunking, raw_attributes in entries:
        f = await call(core.vector_stores.file, who, schemas.file_uuid(raw_id, param))
        out.append((f, schemas.chunking(raw_chunking), schemas.attributes(raw_attributes)))
    return out


@router.post(VS + "/files", operation_id="openai_create_vector_store_file")
async def create_file(request: Request, vector_store_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id, write=True)
    body = await json_object(request)
    if "file_id" not in body:
        raise bad_request("Missing required parameter: 'file_id'.", "file_id")
    entry = (body["file_id"], body.get("chunking_strategy"), body.get("attributes"))
    files = await _files_to_attach(core, auth, [entry], "file_id")
    _, docs = await call(core.vector_stores.attach, ds, files)
    return render.vs_file(ds, docs[0])


def _status_filter(request: Request) -> str | None:
    wanted = request.query_params.get("filter") or None
    if wanted is not None and wanted not in FILE_STATUSES:
        raise bad_request(f"Invalid 'filter': expected one of {', '.join(FILE_STATUSES)}.", "filter")
    return wanted


def _page_of(ds: DataSource, docs: list[Document], page: Page, wanted: str | None) -> dict[str, Any]:
    if wanted is not None:
        docs = [d for d in docs if file_status(d) == wanted]
    items, more = page.slice(docs, render.vs_file_id)
    return list_body([render.vs_file(ds, d) for d in items], more)


@router.get(VS + "/files", operation_id="openai_list_vector_store_files")
async def list_files(request: Request, vector_store_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id)
    page, wanted = Page(request), _status_filter(request)
    return _page_of(ds, await call(core.vector_stores.documents, ds), page, wanted)


@router.get(VS + "/files/{file_id}", operation_id="openai_retrieve_vector_store_file")
async def retrieve_file(vector_store_id: str, file_id: str, response: Response, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id)
    doc = await _vs_file(core, ds, file_id)
    _poll_hint(response, file_status(doc))
    return render.vs_file(ds, doc)


@router.post(VS + "/files/{file_id}", operation_id="openai_update_vector_store_file_attributes")
async def update_file(request: Request, vector_store_id: str, file_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id, write=True)
    doc = await _vs_file(core, ds, file_id)
    body = await json_object(request)
    if "attributes" not in body:
        raise bad_request("Missing required parameter: 'attributes'.", "attributes")
    attributes = schemas.attributes(body["attributes"])
    return render.vs_file(ds, await call(core.vector_stores.set_attributes, ds, doc, attributes))


@router.delete(VS + "/files/{file_id}", operation_id="openai_delete_vector_store_file")
async def delete_file(vector_store_id: str, file_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id, write=True)
    doc = await _vs_file(core, ds, file_id)
    await call(core.vector_stores.detach, ds, doc)
    return {"id": render.vs_file_id(doc), "object": "vector_store.file.deleted", "deleted": True}


@router.get(VS + "/files/{file_id}/content", operation_id="openai_retrieve_vector_store_file_content")
async def file_content(vector_store_id: str, file_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id)
    doc = await _vs_file(core, ds, file_id)
    text = await call(core.vector_stores.text, ds, doc)
    return {"object": "vector_store.file_content.page", "data": [{"type": "text", "text": text}] if text else [],
            "has_more": False, "next_page": None}  # fmt: skip


# --- file batches ------------------------------------------------------------------------------------------------
def _batch_entries(body: dict[str, Any]) -> list[tuple[object, object, object]]:
    """``file_ids`` (with the request's ``chunking_strategy`` and ``attributes``) or ``files`` (each with its own)."""
    ids, files = body.get("file_ids"), body.get("files")
    if (ids is None) == (files is None):
        raise bad_request("Provide exactly one of 'file_ids' and 'files'.", "file_ids")
    param = "file_ids" if ids is not None else "files"
    items = ids if ids is not None else files
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_FILES:
        raise bad_request(f"Invalid '{param}': expected an array of 1 to {MAX_BATCH_FILES} items.", param)
    if ids is not None:
        return [(i, body.get("chunking_strategy"), body.get("attributes")) for i in items]
    out: list[tuple[object, object, object]] = []
    for item in items:
        if not isinstance(item, dict) or "file_id" not in item:
            raise bad_request("Invalid 'files': each item must be an object with a 'file_id'.", "files")
        out.append((item["file_id"], item.get("chunking_strategy"), item.get("attributes")))
    return out


@router.post(VS + "/file_batches", operation_id="openai_create_vector_store_file_batch")
async def create_batch(request: Request, vector_store_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id, write=True)
    body = await json_object(request)
    files = await _files_to_attach(core, auth, _batch_entries(body), "file_ids")
    batch, _ = await call(core.vector_stores.attach, ds, files)
    return render.batch(ds, await call(core.vector_stores.batch, ds, batch))


def _batch_key(ds: DataSource, batch_id: str) -> str:
    batch = strip_prefix(batch_id, BATCH_PREFIX)
    if batch is None:
        raise not_found(f"No file batch found with id '{batch_id}' in vector store '{render.store_id(ds)}'.")
    return batch


async def _batch(core: Core, ds: DataSource, batch_id: str) -> Any:
    try:
        return await call(core.vector_stores.batch, ds, _batch_key(ds, batch_id))
    except DialectError as exc:
        if exc.status != 404:
            raise
        raise not_found(f"No file batch found with id '{batch_id}' in vector store '{render.store_id(ds)}'.") from exc


@router.get(VS + "/file_batches/{batch_id}", operation_id="openai_retrieve_vector_store_file_batch")
async def retrieve_batch(vector_store_id: str, batch_id: str, response: Response, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id)
    info = await _batch(core, ds, batch_id)
    _poll_hint(response, info.status)
    return render.batch(ds, info)


@router.post(VS + "/file_batches/{batch_id}/cancel", operation_id="openai_cancel_vector_store_file_batch")
async def cancel_batch(vector_store_id: str, batch_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id, write=True)
    info = await _batch(core, ds, batch_id)
    return render.batch(ds, await call(core.vector_stores.cancel_batch, ds, info.batch))


@router.get(VS + "/file_batches/{batch_id}/files", operation_id="openai_list_vector_store_file_batch_files")
async def list_batch_files(request: Request, vector_store_id: str, batch_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_store(core, auth, vector_store_id)
    page, wanted = Page(request), _status_filter(request)
    info = await _batch(core, ds, batch_id)
    docs = sorted(info.documents, key=lambda d: (d.created, d.pk))
    return _page_of(ds, docs, page, wanted)
