"""Dify's file routes: a document's uploaded file (info, signed download URL, the download itself), several
documents' files as one ZIP, and the models a knowledge base can use."""

from __future__ import annotations

import hashlib
import hmac
import io
import time
import zipfile
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response

from alexandria.api.deps import run_sync
from alexandria.api.dify.common import (
    AuthDep,
    CoreDep,
    invalid_param,
    json_object,
    require_unbound,
    resolve_dataset,
)
from alexandria.api.dify.documents import resolve_document
from alexandria.api.dify.errors import dify_error
from alexandria.domain.dify import UploadedFile
from alexandria.domain.models import DataSource, Document
from alexandria.services.core import Core

router = APIRouter(prefix="/v1")

URL_LIFETIME_S = 300
SECRET_NAME = "file_url_signing"


def _signature(core: Core, file_id: str, workspace_id: int, expires: int) -> str:
    key = core.dify.instance_secret(SECRET_NAME).encode()
    return hmac.new(key, f"{file_id}|{workspace_id}|{expires}".encode(), hashlib.sha256).hexdigest()


def signed_url(request: Request, core: Core, workspace_id: int, file_id: str) -> str:
    expires = int(time.time()) + URL_LIFETIME_S
    sign = _signature(core, file_id, workspace_id, expires)
    base = str(request.base_url).rstrip("/")
    return f"{base}/v1/files/{file_id}/file-download?workspace={workspace_id}&expires={expires}&sign={sign}"


def _file_of(core: Core, ds: DataSource, doc: Document, message: str) -> tuple[UploadedFile, bytes]:
    record = doc.dify or {}
    file_id = (record.get("file") or {}).get("id")
    if not record.get("stored_file") or not file_id:
        raise dify_error(404, "not_found", message)
    found = core.dify.uploaded_file(ds.workspace_id, str(file_id))
    if found is None:
        raise dify_error(404, "not_found", "Uploaded file not found.")
    return found


@router.get("/datasets/{dataset_id}/documents/{document_id}/download")
async def download(request: Request, dataset_id: str, document_id: str, auth: AuthDep, core: CoreDep) -> Any:
    ds = await resolve_dataset(core, auth, dataset_id)
    doc = await resolve_document(core, ds, document_id)
    f, _ = await run_sync(_file_of, core, ds, doc, "Document does not have an uploaded file to download.")
    return {"url": await run_sync(signed_url, request, core, ds.workspace_id, f.uuid)}


@router.get("/datasets/{dataset_id}/documents/{document_id}/upload-file")
async def upload_file_info(request: Request, dataset_id: str, document_id: str, auth: AuthDep, core: CoreDep) -> Any:
    """Dify 1.x's description of a document's uploaded file."""
    ds = await resolve_dataset(core, auth, dataset_id)
    doc = await resolve_document(core, ds, document_id)
    record = doc.dify or {}
    if not record.get("stored_file"):
        raise invalid_param("Document is not an uploaded file.")
    f, _ = await run_sync(_file_of, core, ds, doc, "Uploaded file not found.")
    url = await run_sync(signed_url, request, core, ds.workspace_id, f.uuid)
    return {"id": f.uuid, "name": f.name, "size": f.size, "extension": f.extension, "url": url,
            "download_url": url + "&as_attachment=true", "mime_type": f.mime_type, "created_by": "api",
            "created_at": f.created_at / 1000}  # fmt: skip


@router.get("/files/{file_id}/file-download", include_in_schema=False)
async def file_download(request: Request, file_id: str, core: CoreDep) -> Response:
    """The target of a signed URL: no key, the signature (valid for five minutes) is the credential."""
    params = request.query_params
    try:
        workspace_id, expires = int(params.get("workspace", "")), int(params.get("expires", ""))
    except ValueError as exc:
        raise dify_error(403, "forbidden", "Invalid or expired download link.") from exc
    expected = await run_sync(_signature, core, file_id, workspace_id, expires)
    if expires < time.time() or not hmac.compare_digest(expected, params.get("sign", "")):
        raise dify_error(403, "forbidden", "Invalid or expired download link.")
    found = await run_sync(core.dify.uploaded_file, workspace_id, file_id)
    if found is None:
        raise dify_error(404, "not_found", "Uploaded file not found.")
    f, data = found
    disposition = "attachment" if params.get("as_attachment") == "true" else "inline"
    headers = {"Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(f.name)}"}
    return Response(data, media_type=f.mime_type, headers=headers)


@router.post("/datasets/{dataset_id}/documents/download-zip")
async def download_zip(request: Request, dataset_id: str, auth: AuthDep, core: CoreDep) -> Response:
    ds = await resolve_dataset(core, auth, dataset_id)
    body = await json_object(request)
    ids = body.get("document_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 100 or not all(isinstance(i, str) for i in ids):
        raise invalid_param("document_ids must be a list of 1 to 100 document ids.")
    files: list[tuple[UploadedFile, bytes]] = []
    for document_id in dict.fromkeys(ids):
        doc = await resolve_document(core, ds, document_id)
        files.append(await run_sync(_file_of, core, ds, doc, "Only uploaded-file documents can be downloaded as ZIP."))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        taken: set[str] = set()
        for f, data in files:
            name, n = f.name, 1
            while name in taken:  # two documents with one file name: keep both
                stem, dot, ext = f.name.rpartition(".")
                name = f"{stem} ({n}).{ext}" if dot else f"{f.name} ({n})"
                n += 1
            taken.add(name)
            archive.writestr(name, data)
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(ds.name)}.zip"}
    return Response(buffer.getvalue(), media_type="application/zip", headers=headers)


MODEL_TYPES = ("text-embedding", "rerank", "llm", "tts", "speech2text", "moderation")


@router.get("/workspaces/current/models/model-types/{model_type}")
async def models(model_type: str, auth: AuthDep, core: CoreDep) -> Any:
    """The models a knowledge base can use: the embedding model, and the reranker when one is configured. A route
    about the workspace, not one dataset: a dataset-bound key gets 403, as on Dify's other dataset-less routes."""
    require_unbound(auth)
    if model_type not in MODEL_TYPES:
        raise invalid_param(f"Invalid model_type: {model_type}. Must be one of {list(MODEL_TYPES)}")
    names: list[tuple[str, dict[str, Any]]] = []
    if model_type == "text-embedding":
        embedder = await run_sync(core.embedders.get, core.embedders.default_name())
        names.append((embedder.name, {"context_size": embedder.max_tokens + 2}))
        names += [(name, {"context_size": limit + 2}) for name, limit in core.embedders.optional_models()]
    elif model_type == "rerank" and core.dify_retrieval.reranker is not None:
        names.append((core.dify_retrieval.reranker.name, {}))
    if not names:
        return {"data": []}
    label = {"en_US": "Alexandria", "zh_Hans": "Alexandria"}
    return {
        "data": [
            {
                "provider": "alexandria",
                "label": label,
                "icon_small": None,
                "icon_small_dark": None,
                "status": "active",
                "tenant_id": auth.workspace.sid,
                "models": [
                    {
                        "model": name,
                        "label": {"en_US": name, "zh_Hans": name},
                        "model_type": model_type,
                        "features": None,
                        "fetch_from": "predefined-model",
                        "model_properties": props,
                        "status": "active",
                        "deprecated": False,
                        "load_balancing_enabled": False,
                        "has_invalid_load_balancing_configs": False,
                    }
                    for name, props in names
                ],
            }
        ]
    }
