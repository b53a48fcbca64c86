"""The domain error tree.

Every error raised by the core carries a stable ``code`` and a human message, and no HTTP status: each dialect maps
codes to its own status and envelope (see ``alexandria.api.dust.errors``). Driver errors are mapped to this tree at
the storage boundary.
"""

from __future__ import annotations


class AlexandriaError(Exception):
    """Base of every domain error. ``code`` is stable and documented; ``message`` is for humans."""

    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(AlexandriaError):
    """The caller sent something the core cannot accept (bad value, missing field, inconsistent parents)."""

    code = "invalid_request"


class NotFound(AlexandriaError):
    """A named object does not exist (or is not visible to the caller). Codes: ``workspace_not_found``,
    ``space_not_found``, ``data_source_not_found``, ``document_not_found``."""

    code = "not_found"


class AlreadyExists(AlexandriaError):
    """A unique name is taken (``data_source_name_taken``)."""

    code = "already_exists"


class QuotaExceeded(AlexandriaError):
    """A size or count limit was exceeded (``document_too_large``)."""

    code = "quota_exceeded"


class RateLimited(AlexandriaError):
    """Too many requests in the current window (``rate_limited``); ``retry_after``: seconds until a retry may pass."""

    code = "rate_limited"

    def __init__(self, message: str, *, code: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, code=code)
        self.retry_after = max(1, retry_after)


class Unauthenticated(AlexandriaError):
    """No usable credentials (``not_authenticated``) or an unknown/disabled key (``invalid_api_key``)."""

    code = "not_authenticated"


class PermissionDenied(AlexandriaError):
    """Authenticated, but not allowed (``workspace_auth_error``, ``data_source_auth_error``)."""

    code = "permission_denied"


class ChunkingFailed(InvalidRequest):
    """The document cannot be chunked (e.g. section prefixes exceed half the chunk size)."""

    code = "chunking_failed"


class EmbeddingFailed(AlexandriaError):
    """The embedding model or service failed."""

    code = "embedding_failed"


class StorageError(AlexandriaError):
    """The storage backend failed (a driver error mapped at the storage boundary)."""

    code = "storage_error"
