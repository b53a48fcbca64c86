"""Validation of OpenAI request fields, each failing with a 400 that names its ``param``: metadata, attributes,
chunking strategies, expiry, file ids, purposes. Unknown fields are tolerated (the SDK's ``extra_body``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from alexandria.api.openai.errors import bad_request
from alexandria.domain.openai import FILE_PREFIX, FILE_PURPOSES, strip_prefix
from alexandria.services.openai_stores import AUTO, Chunking

MAX_KEYS = 16
MAX_KEY_LENGTH = 64
MAX_STRING_VALUE = 512
MIN_CHUNK, MAX_CHUNK = 100, 4096


_JSON_TYPES = {
    "str": "string",
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
}


def _type(value: object) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value).__name__, "value")


def _keyed(value: object, param: str) -> dict[str, Any]:
    """An object of at most ``MAX_KEYS`` keys of at most ``MAX_KEY_LENGTH`` characters (metadata, attributes)."""
    if not isinstance(value, dict):
        raise bad_request(f"Invalid type for '{param}': expected an object, but got {_type(value)} instead.", param)
    if len(value) > MAX_KEYS:
        raise bad_request(f"Invalid '{param}': too many properties. Expected at most {MAX_KEYS}.", param)
    for key in value:
        if len(key) > MAX_KEY_LENGTH:
            raise bad_request(f"Invalid '{param}': key {key[:70]!r} is longer than {MAX_KEY_LENGTH} characters.", param)
    return value


def metadata(value: object, param: str = "metadata") -> dict[str, str]:
    """A vector store's ``metadata``: at most 16 keys of ≤64 characters, string values of ≤512."""
    if value is None:
        return {}
    checked = _keyed(value, param)
    for key, item in checked.items():
        if not isinstance(item, str):
            raise bad_request(f"Invalid type for '{param}.{key}': expected a string, got {_type(item)}.", param)
        if len(item) > MAX_STRING_VALUE:
            raise bad_request(f"Invalid '{param}.{key}': string longer than {MAX_STRING_VALUE} characters.", param)
    return dict(checked)


def attributes(value: object, param: str = "attributes") -> dict[str, Any] | None:
    """A file's ``attributes``: at most 16 keys of ≤64 characters; values strings (≤512), numbers or booleans."""
    if value is None:
        return None
    checked = _keyed(value, param)
    for key, item in checked.items():
        if isinstance(item, str):
            if len(item) > MAX_STRING_VALUE:
                raise bad_request(f"Invalid '{param}.{key}': string longer than {MAX_STRING_VALUE} characters.", param)
        elif isinstance(item, float) and not math.isfinite(item):
            raise bad_request(f"Invalid '{param}.{key}': numbers must be finite.", param)
        elif not isinstance(item, str | int | float | bool):
            raise bad_request(
                f"Invalid type for '{param}.{key}': expected a string, number or boolean, got {_type(item)}.", param
            )
    return dict(checked)


def _int(value: object, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"Invalid type for '{param}': expected an integer, but got {_type(value)} instead.", param)
    return value


def chunking(value: object, param: str = "chunking_strategy") -> Chunking:
    """``auto`` (800/400 tokens) or ``static`` (``max_chunk_size_tokens`` 100..4096, overlap at most half)."""
    if value is None:
        return AUTO
    if not isinstance(value, dict):
        raise bad_request(f"Invalid type for '{param}': expected an object, but got {_type(value)} instead.", param)
    kind = value.get("type")
    if kind == "auto":
        return AUTO
    if kind != "static":
        raise bad_request(f"Invalid '{param}.type': expected 'auto' or 'static', got {kind!r}.", param)
    static = value.get("static")
    if not isinstance(static, dict):
        raise bad_request(f"Missing required parameter: '{param}.static'.", param)
    size = _int(static.get("max_chunk_size_tokens"), f"{param}.static.max_chunk_size_tokens")
    overlap = _int(static.get("chunk_overlap_tokens"), f"{param}.static.chunk_overlap_tokens")
    if not MIN_CHUNK <= size <= MAX_CHUNK:
        raise bad_request(
            f"Invalid '{param}.static.max_chunk_size_tokens': must be between {MIN_CHUNK} and {MAX_CHUNK}, got {size}.",
            param,
        )
    if overlap < 0 or overlap * 2 > size:
        raise bad_request(
            f"Invalid '{param}.static.chunk_overlap_tokens': must be between 0 and half of max_chunk_size_tokens "
            f"({size // 2}), got {overlap}.",
            param,
        )
    return Chunking(size, overlap)


def expires_after(value: object, param: str = "expires_after") -> dict[str, Any] | None:
    """``{"anchor": "last_active_at", "days": 1..365}`` or null."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request(f"Invalid type for '{param}': expected an object, but got {_type(value)} instead.", param)
    if value.get("anchor") != "last_active_at":
        raise bad_request(f"Invalid '{param}.anchor': expected 'last_active_at'.", param)
    days = _int(value.get("days"), f"{param}.days")
    if not 1 <= days <= 365:
        raise bad_request(f"Invalid '{param}.days': must be between 1 and 365, got {days}.", param)
    return {"anchor": "last_active_at", "days": days}


def optional_str(body: Mapping[str, Any], key: str, max_len: int | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad_request(f"Invalid type for '{key}': expected a string, but got {_type(value)} instead.", key)
    if max_len is not None and len(value) > max_len:
        raise bad_request(f"Invalid '{key}': string too long. Expected at most {max_len} characters.", key)
    return value


def file_uuid(value: object, param: str = "file_id") -> str:
    """The uuid of a ``file-<uuid>`` id (400 for anything that is not a string)."""
    if not isinstance(value, str) or not value:
        raise bad_request(f"Invalid type for '{param}': expected a file id string, got {_type(value)}.", param)
    return strip_prefix(value, FILE_PREFIX) or value


def purpose(value: object) -> str:
    if value not in FILE_PURPOSES:
        raise bad_request(
            f"Invalid value for 'purpose': expected one of {', '.join(FILE_PURPOSES)}, got {value!r}.", "purpose"
        )
    return str(value)
