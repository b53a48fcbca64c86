"""Dust's error envelope ``{"error": {"type", "message"[, "data_source_error"]}}`` and the mapping of domain codes."""

from __future__ import annotations

from typing import Any

from alexandria.api.errors import DialectError
from alexandria.errors import AlexandriaError, RateLimited
from alexandria.services.access import AccessDenied, Refusal

# domain code -> (HTTP status, Dust error type)
_BY_CODE: dict[str, tuple[int, str]] = {
    "not_authenticated": (401, "not_authenticated"),
    "invalid_api_key": (401, "invalid_api_key_error"),
    "workspace_auth_error": (401, "workspace_auth_error"),
    "workspace_not_found": (404, "workspace_not_found"),
    "space_not_found": (404, "space_not_found"),
    "data_source_not_found": (404, "data_source_not_found"),
    "data_source_auth_error": (403, "data_source_auth_error"),
    "document_too_large": (403, "data_source_quota_error"),
    "invalid_top_k": (400, "data_source_error"),
    "embedding_failed": (500, "internal_server_error"),
    "storage_error": (500, "internal_server_error"),
}
_BY_CLASS: dict[str, tuple[int, str]] = {
    "InvalidRequest": (400, "invalid_request_error"),
    "ChunkingFailed": (400, "invalid_request_error"),
    "AlreadyExists": (400, "invalid_request_error"),
    "NotFound": (404, "invalid_request_error"),
    "QuotaExceeded": (403, "data_source_quota_error"),
    "PermissionDenied": (403, "data_source_auth_error"),
    "RateLimited": (429, "rate_limit_error"),
    "Unauthenticated": (401, "not_authenticated"),
}


_NOT_A_MEMBER = (401, "workspace_auth_error", "Only users of the workspace can access this route.")
_NO_DATA_SOURCE = (404, "data_source_not_found", "The data source you requested was not found.")
# a refused request (services/access.py) -> (HTTP status, Dust error type, message; None: the caller's message).
# What a key cannot reach does not exist for it: Dust's 404s of resource_wrappers.ts (dust-behaviour.md §1.1).
_BY_REFUSAL: dict[Refusal, tuple[int, str, str | None]] = {
    Refusal.OTHER_WORKSPACE: _NOT_A_MEMBER,
    Refusal.ROLE: _NOT_A_MEMBER,
    Refusal.SPACE_NOT_FOUND: (404, "space_not_found", "The space you requested was not found."),
    Refusal.DATA_SOURCE_NOT_FOUND: _NO_DATA_SOURCE,
    Refusal.DATA_SOURCE_HIDDEN: _NO_DATA_SOURCE,
    Refusal.OTHER_DATA_SOURCE: _NO_DATA_SOURCE,
    Refusal.WORKSPACE_WIDE: _NO_DATA_SOURCE,
    Refusal.VIEW_NOT_FOUND: (404, "data_source_view_not_found", "The data source view you requested was not found."),
    Refusal.READ_ONLY: (403, "data_source_auth_error", None),
    Refusal.MANAGED: (403, "data_source_auth_error", None),
    Refusal.NOT_ADMIN: (401, "workspace_auth_error", None),
}


def retry_after(seconds: int) -> dict[str, str]:
    """The ``Retry-After`` header every 429 carries."""
    return {"Retry-After": str(max(1, seconds))}


def dust_error(status: int, type_: str, message: str, data_source_error: dict[str, str] | None = None) -> DialectError:
    err: dict[str, Any] = {"type": type_, "message": message}
    if data_source_error is not None:
        err["data_source_error"] = data_source_error
    return DialectError(status, {"error": err})


def from_domain(exc: AlexandriaError) -> DialectError:
    if isinstance(exc, AccessDenied):
        status, type_, message = _BY_REFUSAL[exc.refusal]
        return dust_error(status, type_, message or exc.message)
    status, type_ = _BY_CODE.get(exc.code) or _BY_CLASS.get(type(exc).__name__) or (500, "internal_server_error")
    if isinstance(exc, RateLimited):
        return DialectError(status, {"error": {"type": type_, "message": exc.message}}, retry_after(exc.retry_after))
    if type_ == "data_source_error":
        return dust_error(status, type_, exc.message, {"code": exc.code, "message": exc.message})
    return dust_error(status, type_, exc.message)
