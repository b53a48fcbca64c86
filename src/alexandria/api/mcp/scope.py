"""Who calls an MCP tool and what it may reach: the bearer key resolved to a principal, knowledge bases (data
sources) resolved through ``services/access.py`` — the same checks as the REST doors — with refusals turned into
tool errors that tell the model what it can do instead. Nothing here widens a scope: an unknown or forbidden id is
an error, never "search everything instead"."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from alexandria.domain.models import DataSource, Principal, Space
from alexandria.errors import AlexandriaError, Unauthenticated
from alexandria.services.access import READER_ROLES, AccessDenied, AccessService, Refusal, can_write
from alexandria.services.core import Core

TokenSource = Callable[[], str | None]


class McpAccessError(ToolError):
    """A refused tool call (unknown id, forbidden scope, bad credentials), with an actionable message."""


def principal(core: Core, token: str | None) -> Principal:
    """The caller of this request: the key behind ``token`` in its own workspace, checked on every call."""
    if not token:
        raise McpAccessError("No API key: send `Authorization: Bearer <key>` (or set ALEXANDRIA_API_KEY for stdio).")
    try:
        key = core.keys.authenticate(token)
    except Unauthenticated as exc:
        raise McpAccessError("The API key is invalid or disabled.") from exc
    ws = core.catalog.workspace_by_id(key.workspace_id)
    if ws is None:
        raise McpAccessError("The API key's workspace no longer exists.")
    try:
        return core.access.principal(ws, key, roles=READER_ROLES)  # a ``user`` key: read-only
    except AccessDenied as exc:
        raise McpAccessError("This key's role may not use the API.") from exc


def writable(who: Principal, space: Space, ds: DataSource) -> bool:
    """The key may write documents into ``ds`` (the rules of the REST doors' upsert)."""
    return can_write(who, space) and (ds.connector_provider is None or who.is_system)


def visible(core: Core, who: Principal) -> list[tuple[Space, DataSource]]:
    """The knowledge bases the key reads, in a stable order."""
    spaces = {s.id: s for s in core.catalog.spaces(who.workspace)}
    out = [(spaces[ds.space_id], ds) for ds in core.access.visible_data_sources(who) if ds.space_id in spaces]
    return sorted(out, key=lambda sd: (sd[1].name.lower(), sd[1].sid))


def knowledge_base(core: Core, who: Principal, ref: str) -> tuple[Space, DataSource]:
    """Knowledge base ``ref`` (id or name) in any space the key reads; refusals name what the key can reach."""
    try:
        return core.access.data_source(who, ref, None, anywhere=True)
    except AccessDenied as exc:
        raise McpAccessError(refusal_message(core, who, ref, exc.refusal)) from exc


def refusal_message(core: Core, who: Principal, ref: str, refusal: Refusal) -> str:
    if refusal is Refusal.OTHER_DATA_SOURCE and who.key.data_source_id is not None:
        bound = core.catalog.data_source_by_id(who.key.data_source_id)
        name = f"{bound.name} ({bound.sid})" if bound is not None else "another one"
        return f"This key is bound to one knowledge base, {name}; it cannot reach `{ref}`."
    reachable = visible(core, who)
    names = [ds.name for _, ds in reachable] + [ds.sid for _, ds in reachable]
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    listing = ", ".join(f"{ds.name} ({ds.sid})" for _, ds in reachable[:20]) or "none"
    return (
        f"Unknown knowledge base `{ref}` (or one this key cannot read).{hint} "
        f"Knowledge bases this key can read: {listing}. Call list_knowledge_bases for details."
    )


def require_write(who: Principal, space: Space, ds: DataSource) -> None:
    try:
        AccessService.require_unmanaged(who, ds, "managed")
        AccessService.require_write(who, space, "read_only")
    except AccessDenied as exc:
        why = (
            "it is managed by a connector"
            if exc.refusal is Refusal.MANAGED
            else "this key may only read there (a read-only `user` key, or not a member of the space)"
        )
        raise McpAccessError(f"This key cannot write into knowledge base `{ds.sid}`: {why}.") from exc


@contextmanager
def tool_errors() -> Iterator[None]:
    """Domain errors (bad values, unknown documents, limits) become tool errors with the core's message."""
    try:
        yield
    except ToolError:
        raise
    except AccessDenied as exc:
        raise McpAccessError(f"Refused: {exc.refusal.value.replace('_', ' ')}.") from exc
    except AlexandriaError as exc:
        raise ToolError(exc.message) from exc
