"""The OpenAI door's part of the served OpenAPI document: request bodies, list parameters, non-JSON answers and the
statuses each operation may answer in OpenAI's error body (``api/openapi.py`` calls :func:`describe`)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

ENVELOPE: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

_ERRORS = {
    400: "Invalid request: the error's `param` names the field.",
    401: "Missing or invalid API key.",
    403: "The key may not do this (its role, or a key bound to one vector store).",
    404: "No such vector store, file or batch (or not visible to the key).",
    405: "The path exists, but not with this method.",
    409: "Conflict.",
    413: "The request body is too large.",
    429: "Too many requests (retry after Retry-After).",
    500: "Internal error (embedding or storage backend); `x-should-retry: false`.",
}
_HEADERS: dict[int, Schema] = {
    405: {"Allow": {"description": "The methods the path allows.", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds until a retry may pass.", "schema": {"type": "integer"}}},
}

_ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}
_FILTER: Schema = {"type": "object", "description": "A ComparisonFilter {type, key, value} or CompoundFilter "
                   "{type: and|or, filters}.", "additionalProperties": True}  # fmt: skip
_CHUNKING: Schema = {"type": "object", "description": "{type: auto} or {type: static, static: {max_chunk_size_tokens "
                     "(100-4096), chunk_overlap_tokens (at most half)}}", "additionalProperties": True}  # fmt: skip
_ATTRIBUTES: Schema = {"type": ["object", "null"], "maxProperties": 16,
                       "additionalProperties": {"type": ["string", "number", "boolean"]}}  # fmt: skip
_METADATA: Schema = {"type": ["object", "null"], "maxProperties": 16, "additionalProperties": {"type": "string"}}
_EXPIRES: Schema = {"type": ["object", "null"], "properties": {"anchor": {"const": "last_active_at"},
                                                              "days": {"type": "integer"}}}  # fmt: skip


def _obj(required: list[str], **props: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": props, "additionalProperties": True}


_STORE_BODY = _obj([], name={"type": ["string", "null"]}, description={"type": "string"}, metadata=_METADATA,
                   expires_after=_EXPIRES, chunking_strategy=_CHUNKING,
                   file_ids={"type": "array", "items": {"type": "string"}})  # fmt: skip
_BODIES: dict[str, Schema] = {
    "post /v1/vector_stores": _STORE_BODY,
    "post /v1/vector_stores/{vector_store_id}": _obj(
        [], name={"type": ["string", "null"]}, metadata=_METADATA, expires_after=_EXPIRES
    ),
    "post /v1/vector_stores/{vector_store_id}/search": _obj(
        ["query"],
        query={"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        rewrite_query={"type": "boolean"},
        max_num_results={"type": "integer", "minimum": 1, "maximum": 50},
        filters=_FILTER,
        ranking_options=_ANY_OBJECT,
    ),
    "post /v1/vector_stores/{vector_store_id}/files": _obj(
        ["file_id"], file_id={"type": "string"}, chunking_strategy=_CHUNKING, attributes=_ATTRIBUTES
    ),
    "post /v1/vector_stores/{vector_store_id}/files/{file_id}": _obj(["attributes"], attributes=_ATTRIBUTES),
    "post /v1/vector_stores/{vector_store_id}/file_batches": _obj(
        [],
        file_ids={"type": "array", "items": {"type": "string"}},
        files={"type": "array", "items": _ANY_OBJECT},
        chunking_strategy=_CHUNKING,
        attributes=_ATTRIBUTES,
    ),
}
_UPLOAD: Schema = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "purpose"],
                "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"type": "string"}},
            }
        }
    },
}


def _q(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema}


_PAGE = [_q("limit", {"type": "integer"}), _q("order", {"type": "string", "enum": ["asc", "desc"]}),
         _q("after", {"type": "string"}), _q("before", {"type": "string"})]  # fmt: skip
_STATUS_FILTER = _q("filter", {"type": "string", "enum": ["in_progress", "completed", "failed", "cancelled"]})
_QUERY: dict[str, list[Schema]] = {
    "get /v1/files": [*_PAGE, _q("purpose", {"type": "string"})],
    "get /v1/vector_stores": _PAGE,
    "get /v1/vector_stores/{vector_store_id}/files": [*_PAGE, _STATUS_FILTER],
    "get /v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files": [*_PAGE, _STATUS_FILTER],
}
_RAW = {"200": {"description": "The file's bytes, in its own media type.",
                "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}}  # fmt: skip


def describe(path: str, method: str, op: Schema, ref: str) -> None:
    """Completes the operation ``op`` of an OpenAI path; ``ref`` is the ``$ref`` of the error envelope."""
    key = f"{method} {path}"
    if key == "post /v1/files":
        op["requestBody"] = _UPLOAD
    elif key in _BODIES:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _BODIES[key]}}}
    params = [p for p in op.get("parameters", []) if p.get("in") == "path"]
    for param in params:
        param["schema"] = {"type": "string", "minLength": 1}
    op["parameters"] = params + _QUERY.get(key, [])
    if not op["parameters"]:
        del op["parameters"]
    if key == "get /v1/files/{file_id}/content":
        op["responses"].update(_RAW)
    for status, text in _ERRORS.items():
        response: Schema = {"description": text, "content": {"application/json": {"schema": {"$ref": ref}}}}
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        op["responses"][str(status)] = response
