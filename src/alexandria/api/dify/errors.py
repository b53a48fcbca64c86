"""Dify's error envelope ``{"code", "message", "status"}`` and the mapping of domain codes to it."""

from __future__ import annotations

from alexandria.api.doors import door_of
from alexandria.api.errors import DialectError
from alexandria.errors import AlexandriaError
from alexandria.services.access import AccessDenied, Refusal

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="api"'}
ROUTE_NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually please check your spelling and "
    "try again."
)

# domain code -> (HTTP status, Dify code)
_BY_CODE: dict[str, tuple[int, str]] = {
    "dataset_name_duplicate": (409, "dataset_name_duplicate"),
    "invalid_action": (400, "invalid_action"),
    "invalid_metadata": (400, "invalid_metadata"),
    "archived_document_immutable": (403, "archived_document_immutable"),
    "unsupported_file_type": (415, "unsupported_file_type"),
    "file_too_large": (413, "file_too_large"),
    "no_file_uploaded": (400, "no_file_uploaded"),
    "too_many_files": (400, "too_many_files"),
    "filename_not_exists_error": (400, "filename_not_exists_error"),
    "dataset_not_initialized": (400, "dataset_not_initialized"),
    "embedding_failed": (500, "internal_server_error"),
    "storage_error": (500, "internal_server_error"),
    "rerank_failed": (500, "internal_server_error"),
}
_BY_CLASS: dict[str, tuple[int, str]] = {
    "InvalidRequest": (400, "invalid_param"),
    "ChunkingFailed": (400, "invalid_param"),
    "AlreadyExists": (400, "invalid_param"),
    "NotFound": (404, "not_found"),
    "QuotaExceeded": (403, "forbidden"),
    "PermissionDenied": (403, "forbidden"),
    "RateLimited": (403, "forbidden"),
    "Unauthenticated": (401, "unauthorized"),
}


_NO_PERMISSION = (403, "forbidden", "No permission.")
# a refused request (services/access.py) -> (HTTP status, Dify code, message; None: the caller's message). Only a
# dataset that does not exist in the key's tenant is 404 (dify-behaviour.md §5); one the key may not use is 403.
_BY_REFUSAL: dict[Refusal, tuple[int, str, str | None]] = {
    Refusal.OTHER_WORKSPACE: _NO_PERMISSION,
    Refusal.ROLE: _NO_PERMISSION,
    Refusal.SPACE_NOT_FOUND: (404, "not_found", "Dataset not found."),
    Refusal.DATA_SOURCE_NOT_FOUND: (404, "not_found", "Dataset not found."),
    Refusal.DATA_SOURCE_HIDDEN: (403, "forbidden", "You do not have permission to access this dataset."),
    Refusal.OTHER_DATA_SOURCE: (403, "forbidden", "This API key is bound to another dataset."),
    Refusal.WORKSPACE_WIDE: (403, "forbidden", "This API key is bound to one dataset and cannot use this route."),
    Refusal.VIEW_NOT_FOUND: (404, "not_found", "Dataset not found."),
    Refusal.READ_ONLY: _NO_PERMISSION,
    Refusal.MANAGED: _NO_PERMISSION,
    Refusal.NOT_ADMIN: _NO_PERMISSION,
}


def is_dify_path(path: str) -> bool:
    return door_of(path) == "dify"


def dify_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> DialectError:
    return DialectError(status, {"code": code, "message": message, "status": status}, headers)


def from_domain(exc: AlexandriaError) -> DialectError:
    if isinstance(exc, AccessDenied):
        status, code, message = _BY_REFUSAL[exc.refusal]
        return dify_error(status, code, message or exc.message)
    found = _BY_CODE.get(exc.code)
    for cls in type(exc).__mro__:
        found = found or _BY_CLASS.get(cls.__name__)
    status, code = found or (500, "internal_server_error")
    return dify_error(status, code, exc.message, WWW_AUTHENTICATE if status == 401 else None)
