"""Which methods a path allows, for 405 answers (their ``Allow`` header) and for Dify's 404 on ids that cannot match.

Dify declares its path ids with werkzeug's ``<uuid:...>`` converter, so a path whose id is not a UUID matches no
route there and is answered 404, never 405 (dify-behaviour.md §1). Alexandria's routes take plain strings, so a
request that Starlette answers 405 is checked again here with Dify's converters applied.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from starlette.routing import BaseRoute, Match, Route

from alexandria.api.dify.errors import is_dify_path

# Dify path parameters declared as <uuid:...>
DIFY_UUID_PARAMS = frozenset({"dataset_id", "document_id", "segment_id", "child_id", "child_chunk_id", "metadata_id"})


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str]:
    """The methods of every route whose path matches ``path`` (for a Dify path, only routes whose UUID ids parse),
    sorted; empty when no route matches."""
    dify = is_dify_path(path)
    methods: set[str] = set()
    for route in routes:
        if not isinstance(route, Route) or not route.methods:
            continue
        match, child = route.matches({"type": "http", "path": path, "method": "\x00"})
        if match == Match.NONE:
            continue
        params = child.get("path_params", {})
        if dify and not all(_is_uuid(v) for k, v in params.items() if k in DIFY_UUID_PARAMS):
            continue
        methods |= route.methods
    return sorted(methods)
