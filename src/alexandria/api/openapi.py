"""The served ``/openapi.json``: FastAPI's document of the routes, completed with what the handlers read by hand.

The handlers parse their bodies and most query parameters themselves (to answer in each dialect's own envelope), so
FastAPI sees neither. This module post-processes its document once:

- request bodies: Dust's from the pydantic models the handlers validate with (plus the fields they read raw), Dify's
  from Dify's own OpenAPI document (``dify/openapi_dify.json``, made by ``devtools/extract_dify_openapi.py``);
- query parameters, likewise;
- responses: FastAPI's 422 (never sent: validation errors are the dialects' 400) replaced by the 4xx each dialect
  does send, with its envelope as a schema; 405 with its ``Allow`` header, 429 with ``Retry-After``, Dify's 401
  with ``WWW-Authenticate``;
- bearer authentication, and UUID path ids on Dify's routes (others match no route: 404).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from alexandria.api.dify.errors import is_dify_path
from alexandria.api.doors import door_of
from alexandria.api.dust.schemas import ParentsBody, UpsertDocumentBody
from alexandria.api.dust.tables import CsvBody, QueryTablesBody, TableParentsBody, UpsertRowsBody, UpsertTableBody
from alexandria.api.dust.views import FolderBody
from alexandria.api.openai import openapi as openai_openapi
from alexandria.api.routing import DIFY_UUID_PARAMS

Schema = dict[str, Any]
REF = "#/components/schemas/{model}"
DIFY_DATA = Path(__file__).parent / "dify" / "openapi_dify.json"

# --- error envelopes ----------------------------------------------------------------------------------------------
ENVELOPES: dict[str, Schema] = {
    "DustError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {"type": "string"},
                    "message": {"type": "string"},
                    "data_source_error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            }
        },
    },
    "DifyError": {
        "type": "object",
        "required": ["code", "message", "status"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "status": {"type": "integer"}},
    },
}

_ERRORS = {
    400: "Invalid request (body, parameters or state).",
    401: "Missing or invalid API key.",
    403: "The key may not do this, or a quota is exceeded.",
    404: "No such workspace, space, data source, dataset or document (or not visible to the key).",
    405: "The path exists, but not with this method.",
    409: "The name is taken.",
    413: "The request body (or uploaded file) is too large.",
    415: "The file type is not supported.",
    429: "Too many requests: upserts in the current window, writes already waiting to embed, or SQL queries already "
    "waiting (retry after Retry-After).",
    500: "Internal error (embedding or storage backend).",
}
_DUST_ERRORS = (400, 401, 403, 404, 405, 413, 500)
_DIFY_ERRORS = (400, 401, 403, 404, 405, 413, 500)
_HEADERS: dict[int, dict[str, Schema]] = {
    405: {"Allow": {"description": "The methods the path allows.", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds until a retry may pass.", "schema": {"type": "integer"}}},
}
_DIFY_401_HEADERS = {"WWW-Authenticate": {"schema": {"type": "string"}}}


# --- Dust: bodies and query parameters (keys: method and path below /api/v1/w/{wId}, without /spaces/{spaceId}) ---
def _json_body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _model(model: type[BaseModel], defs: dict[str, Schema], **extra: Schema) -> Schema:
    schema = model.model_json_schema(ref_template=REF)
    defs.update(schema.pop("$defs", {}))
    schema["properties"] = {**schema.get("properties", {}), **extra}
    return schema


def _q(name: str, schema: Schema, *, required: bool = False, array: bool = False) -> Schema:
    if array:
        return {"name": name, "in": "query", "required": required, "style": "form", "explode": True,
                "schema": {"type": "array", "items": schema}}  # fmt: skip
    return {"name": name, "in": "query", "required": required, "schema": schema}


_STR: Schema = {"type": "string"}
_NONNEG: Schema = {"type": "integer", "minimum": 0}
_NUM: Schema = {"type": "number"}
_SEARCH = [
    _q("query", _STR, required=True),
    _q("top_k", {"type": "integer", "minimum": 1}, required=True),
    _q("full_text", {"type": "boolean"}),
    _q("search_mode", {"type": "string", "enum": ["keyword", "vector", "hybrid"]}),
    _q("target_document_tokens", {"type": "integer", "minimum": 0}),
    _q("timestamp_gt", _NUM),
    _q("timestamp_lt", _NUM),
    *(_q(n, _STR, array=True) for n in ("tags_in", "tags_not", "parents_in", "parents_not")),
]
_PAGE = [_q("limit", _NONNEG), _q("offset", _NONNEG)]


def _dust_bodies(defs: dict[str, Schema]) -> dict[str, Schema]:
    csv = _model(CsvBody, defs)
    form = {k: v for k, v in csv["properties"].items() if k != "csv"} | {"file": {"type": "string", "format": "binary"}}
    return {
        "POST /documents/{documentId}": _json_body(_model(UpsertDocumentBody, defs, **{"async": {"type": "boolean"}})),
        "POST /documents/{documentId}/parents": _json_body(_model(ParentsBody, defs)),
        "POST /tables": _json_body(_model(UpsertTableBody, defs)),
        "POST /tables/{tId}/parents": _json_body(_model(TableParentsBody, defs)),
        "POST /tables/{tId}/rows": _json_body(_model(UpsertRowsBody, defs)),
        "POST /tables/csv": {
            "required": True,
            "content": {
                "application/json": {"schema": csv},
                "multipart/form-data": {
                    "schema": {"type": "object", "required": ["name", "description", "file"], "properties": form}
                },
            },
        },
        "POST /query_tables": _json_body(_model(QueryTablesBody, defs)),
        "POST /folders/{folderId}": _json_body(_model(FolderBody, defs)),
        "POST /tokenize": _json_body(
            {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
        ),
        "PATCH /data_source_views/{dsvId}": _json_body(
            {
                "type": "object",
                "properties": {
                    k: {"type": "array", "items": {"type": "string"}}
                    for k in ("parentsIn", "parentsToAdd", "parentsToRemove")
                },
            }
        ),
    }


_DUST_QUERY: dict[str, list[Schema]] = {
    "GET /spaces": [_q("kinds", _STR)],
    "GET /vaults": [_q("kinds", _STR)],
    "GET /documents": [*_PAGE, _q("document_ids", _STR, array=True)],
    "GET /search": _SEARCH,
    "GET /data_source_views/{dsvId}/search": _SEARCH,
    "GET /data_source_views/search": [_q(n, _STR) for n in ("dataSourceId", "kind", "vaultId", "vaultKind")],
    "GET /tables/{tId}/rows": _PAGE,
}
_DUST_RATE_LIMITED = {"POST /documents/{documentId}", "POST /folders/{folderId}", "POST /query_tables"}
# success answers that are not JSON (keyed like the bodies; Dify's by its full path)
_SUCCESS: dict[str, dict[str, Schema]] = {
    "DELETE /tables/{tId}": {"200": {"description": "Deleted (an empty body, as Dust answers)."}},
    "POST /v1/datasets/{dataset_id}/documents/download-zip": {
        "200": {
            "description": "The documents' files as one ZIP archive.",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
}


def _dust_key(method: str, path: str) -> str:
    tail = path.removeprefix("/api/v1/w/{wId}")
    tail = re.sub(r"^(/spaces/\{spaceId\})?/data_sources/\{dsId\}", "", tail)
    tail = re.sub(r"^/spaces/\{spaceId\}(?=/data_source_views/)", "", tail)
    return f"{method.upper()} {tail}"


# --- Dify: from Dify's own document; Alexandria's aliases map onto Dify's names ---------------------------------
_DIFY_ALIASES = (
    ("/document/create_by_text", "/document/create-by-text"),
    ("/document/create_by_file", "/document/create-by-file"),
    ("/update_by_text", "/update-by-text"),
    ("/update_by_file", "/update-by-file"),
    ("/hit-testing", "/retrieve"),
    ("{child_id}", "{child_chunk_id}"),
)


@cache
def dify_operations() -> dict[str, Schema]:
    data: dict[str, Schema] = json.loads(DIFY_DATA.read_text())
    return data


def _dify_key(method: str, path: str) -> str:
    for ours, theirs in _DIFY_ALIASES:
        path = path.replace(ours, theirs)
    return f"{method.upper()} {path}"


# Dify writes that embed in the request, under the write admission (``api/admission.py``): 429 when it is full
_SEGMENTS = "/v1/datasets/{dataset_id}/documents/{document_id}/segments"
_DIFY_ADMITTED = {
    f"post {_SEGMENTS}",
    f"post {_SEGMENTS}/{{segment_id}}",
    f"post {_SEGMENTS}/{{segment_id}}/child_chunks",
    f"patch {_SEGMENTS}/{{segment_id}}/child_chunks/{{child_id}}",
    "patch /v1/datasets/{dataset_id}/documents/status/{action}",
}


def _dify_statuses(method: str, path: str) -> tuple[int, ...]:
    extra: tuple[int, ...] = (429,) if f"{method} {path}" in _DIFY_ADMITTED else ()
    if (path == "/v1/datasets" and method == "post") or (path == "/v1/datasets/{dataset_id}" and method == "patch"):
        extra = (409,)
    elif "file" in path or (method == "patch" and path.endswith("/documents/{document_id}")):
        extra = (*extra, 415)
    return tuple(sorted((*_DIFY_ERRORS, *extra)))


# --- the document -------------------------------------------------------------------------------------------------
def _errors(statuses: tuple[int, ...], envelope: str, dify: bool) -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for status in statuses:
        response: Schema = {
            "description": _ERRORS[status],
            "content": {"application/json": {"schema": {"$ref": REF.format(model=envelope)}}},
        }
        headers = _HEADERS.get(status) or (_DIFY_401_HEADERS if dify and status == 401 else None)
        if headers:
            response["headers"] = headers
        out[str(status)] = response
    return out


def _merge_query(op: Schema, extra: list[Schema]) -> None:
    params = [p for p in op.get("parameters", []) if p.get("in") == "path"]  # FastAPI's query guesses go
    for param in params:  # a path segment is a non-empty string (FastAPI writes `str | None` as nullable)
        param["schema"] = {"type": "string", "minLength": 1}
    op["parameters"] = params + [dict(p) for p in extra]
    if not op["parameters"]:
        del op["parameters"]


def describe(doc: Schema) -> Schema:
    """Completes FastAPI's document ``doc`` in place (and returns it)."""
    schemas: dict[str, Schema] = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(ENVELOPES)
    schemas["OpenAIError"] = openai_openapi.ENVELOPE
    doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    doc["security"] = [{"bearer": []}]
    dust_bodies = _dust_bodies(schemas)
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            op["responses"].pop("422", None)
            if door_of(path) == "openai":
                openai_openapi.describe(path, method, op, REF.format(model="OpenAIError"))
            elif is_dify_path(path):
                _describe_dify(path, method, op)
            else:
                key = _dust_key(method, path)
                if key in dust_bodies:
                    op["requestBody"] = dust_bodies[key]
                _merge_query(op, _DUST_QUERY.get(key, []))
                op["responses"].update(_SUCCESS.get(key, {}))
                statuses = (*_DUST_ERRORS, 429) if key in _DUST_RATE_LIMITED else _DUST_ERRORS
                op["responses"].update(_errors(tuple(sorted(statuses)), "DustError", dify=False))
    return doc


def _describe_dify(path: str, method: str, op: Schema) -> None:
    found = dify_operations().get(_dify_key(method, path), {})
    if "requestBody" in found:
        op["requestBody"] = found["requestBody"]
    _merge_query(op, found.get("query", []))
    op["responses"].update(_SUCCESS.get(_dify_key(method, path), {}))
    for param in op.get("parameters", []):
        if param.get("in") == "path" and (param["name"] in DIFY_UUID_PARAMS):
            param["schema"] = {"type": "string", "format": "uuid", "minLength": 1}
    op["responses"].update(_errors(_dify_statuses(method, path), "DifyError", dify=True))


def install(app: FastAPI) -> None:
    """Serves the completed document at ``app.openapi_url``."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = describe(doc)
        return app.openapi_schema

    setter: Callable[[], dict[str, Any]] = build
    app.openapi = setter  # type: ignore[method-assign]
