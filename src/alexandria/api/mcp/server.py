"""The MCP server over the core: the tools (``tools``, ``write_tools``) and resources for knowledge bases, documents
and tables. The caller is whoever ``token()`` names on each request (the HTTP door sets it from the bearer key; tests
pass a fixed key), so the server object is shared by all callers and holds no per-caller state."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import Resource

from alexandria.api.mcp import scope
from alexandria.api.mcp.tools import ReadTools, kb_card, off_loop
from alexandria.api.mcp.write_tools import WriteTools
from alexandria.services.core import Core

T = TypeVar("T")

INSTRUCTIONS = (
    "Alexandria knowledge bases. Call list_knowledge_bases, then search_knowledge; use grep_knowledge for exact "
    "identifiers and read_document or get_chunk_context for surrounding context; cite document_id and source_url. "
    "Structured tables: list_tables, then query_tables (read-only SQL). Writes return a job handle for "
    "get_indexing_status."
)


class AlexandriaMCP(MCPServer[Any]):
    """``resources/list`` answers the caller's own knowledge bases (the SDK's list is static)."""

    def __init__(self, core: Core, token: scope.TokenSource, *, writes: bool = True) -> None:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        super().__init__("alexandria", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING")
        root.handlers[:], root.level = handlers, level  # the SDK calls logging.basicConfig: logging stays the app's
        self.core = core
        self.reads = ReadTools(core, token)
        self.reads.register(self)
        if writes:
            WriteTools(self.reads).register(self)
        self._register_resources()

    async def list_resources(self) -> list[Resource]:
        def run() -> list[Resource]:
            who = self.reads.who()
            return [
                Resource(
                    uri=f"alexandria://kb/{ds.sid}",
                    name=ds.name,
                    title=ds.name,
                    description=ds.description or f"Knowledge base {ds.name} in space {space.name}",
                    mime_type="application/json",
                )
                for space, ds in scope.visible(self.core, who)
            ]

        return await _resource_call(run)

    def _register_resources(self) -> None:
        reads = self.reads
        core = self.core

        @self.resource("alexandria://kb/{kb_id}", name="knowledge_base", mime_type="application/json")
        async def knowledge_base(kb_id: str) -> str:
            """A knowledge base's card (the item of list_knowledge_bases)."""

            def run() -> str:
                who, space, ds = reads.kb(kb_id)
                return kb_card(who, space, ds).model_dump_json()

            return await _resource_call(run)

        @self.resource("alexandria://kb/{kb_id}/documents/{document_id}", name="document", mime_type="text/plain")
        async def document(kb_id: str, document_id: str) -> str:
            """A document's full text."""

            def run() -> str:
                _, _, ds = reads.kb(kb_id)
                return core.reading.document(ds, document_id).text or ""

            return await _resource_call(run)

        @self.resource("alexandria://kb/{kb_id}/tables/{table_id}", name="table", mime_type="application/json")
        async def table(kb_id: str, table_id: str) -> str:
            """A table's schema and description."""

            def run() -> str:
                _, _, ds = reads.kb(kb_id)
                t = core.tables.require(ds, table_id)
                cols = [{"name": c.name, "type": c.value_type} for c in t.schema or ()]
                return json.dumps(
                    {
                        "table_id": t.table_id,
                        "name": t.name,
                        "title": t.title,
                        "description": t.description,
                        "columns": cols,
                    }
                )

            return await _resource_call(run)


async def _resource_call(run: Callable[[], T]) -> T:
    """``run`` on a worker thread; refusals and unknown ids as resource errors with the tools' messages."""
    try:
        return await off_loop(run)
    except ToolError as exc:
        raise ResourceError(str(exc)) from exc
