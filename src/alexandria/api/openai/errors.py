"""OpenAI's error body ``{"error": {"message", "type", "param", "code"}}`` and the mapping of domain errors to it.

The SDK raises by status (``BadRequestError`` 400, ``AuthenticationError`` 401, ``PermissionDeniedError`` 403,
``NotFoundError`` 404, ``ConflictError`` 409, ``RateLimitError`` 429, ``InternalServerError`` 5xx) and retries 408,
409, 429 and 5xx unless ``x-should-retry: false`` says a retry cannot help.
"""

from __future__ import annotations

from alexandria.api.errors import DialectError
from alexandria.errors import AlexandriaError
from alexandria.services.access import AccessDenied, Refusal

INVALID = "invalid_request_error"
NO_RETRY = {"x-should-retry": "false"}

_BOUND = "This API key is bound to one vector store and cannot use this route."
_BOUND = "This API key is bound to one vector store and cannot use this route."
_FORBIDDEN = (
    403,
    "permission_error",
    "insufficient_permissions",
    "You have insufficient permissions for this operation.",
)
# a refused request (services/access.py) -> (status, type, code, message). What the key cannot reach does not exist
# for it (404, as OpenAI answers an id of another project); what it sees but may not do is 403.
_BY_REFUSAL: dict[Refusal, tuple[int, str, str, str]] = {
    Refusal.OTHER_WORKSPACE: (404, INVALID, "not_found", "No such vector store."),
    Refusal.ROLE: _FORBIDDEN,
    Refusal.SPACE_NOT_FOUND: (404, INVALID, "not_found", "No such vector store."),
    Refusal.DATA_SOURCE_NOT_FOUND: (404, INVALID, "not_found", "No such vector store."),
    Refusal.DATA_SOURCE_HIDDEN: (404, INVALID, "not_found", "No such vector store."),
    Refusal.OTHER_DATA_SOURCE: (404, INVALID, "not_found", "No such vector store."),
    Refusal.VIEW_NOT_FOUND: (404, INVALID, "not_found", "No such vector store."),
    Refusal.WORKSPACE_WIDE: (403, "permission_error", "insufficient_permissions", _BOUND),
    Refusal.READ_ONLY: _FORBIDDEN,
    Refusal.MANAGED: _FORBIDDEN,
    Refusal.NOT_ADMIN: _FORBIDDEN,
}
_BY_CLASS: dict[str, tuple[int, str]] = {
    "InvalidRequest": (400, INVALID),
    "ChunkingFailed": (400, INVALID),
    "QuotaExceeded": (400, INVALID),
    "AlreadyExists": (409, INVALID),
    "NotFound": (404, INVALID),
    "PermissionDenied": (403, "permission_error"),
    "RateLimited": (429, "rate_limit_error"),
    "Unauthenticated": (401, INVALID),
}


def openai_error(
    status: int,
    message: str,
    *,
    type_: str = INVALID,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> DialectError:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    if status >= 500 and headers is None:
        headers = NO_RETRY
    return DialectError(status, body, headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> DialectError:
    return openai_error(400, message, param=param, code=code)


def not_found(message: str, param: str | None = None) -> DialectError:
    return openai_error(404, message, param=param, code="not_found")


def unauthorized(message: str) -> DialectError:
    return openai_error(401, message, code="invalid_api_key")


def from_domain(exc: AlexandriaError, not_found_message: str | None = None) -> DialectError:
    """The error a domain error is on this door; ``not_found_message`` names what was not found (with its id)."""
    if isinstance(exc, AccessDenied):
        status, type_, code, message = _BY_REFUSAL[exc.refusal]
        if status == 404 and not_found_message:
            message = not_found_message
        return openai_error(status, message, type_=type_, code=code)
    found = None
    for cls in type(exc).__mro__:
        found = found or _BY_CLASS.get(cls.__name__)
    status, type_ = found or (500, "server_error")
    return openai_error(status, exc.message, type_=type_, code=exc.code or None)
