"""``alexandria mcp``: the MCP server over stdio for desktop agents (Claude Desktop, Cursor, Claude Code), as a thin
client of a running ``alexandria serve``: every request is forwarded to the server's ``/mcp`` with the key from
``ALEXANDRIA_API_KEY``. It never opens the store itself, so it is never a second writer on an embedded store, and it
has no rules of its own beyond one: it is read-only (the write tools are neither listed nor callable) unless
started with ``--allow-writes``. Nothing but MCP messages is written to stdout; diagnostics go to stderr."""

from __future__ import annotations

import logging
import sys
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
    ListToolsResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    TextContent,
    Tool,
)

from alexandria.api.mcp.server import INSTRUCTIONS

log = logging.getLogger(__name__)


def is_write_tool(tool: Tool) -> bool:
    """A tool that changes data: anything not annotated read-only (unknown tools included)."""
    return tool.annotations is None or tool.annotations.read_only_hint is not True


def proxy(remote: Client, *, allow_writes: bool) -> Server[Any]:
    """A server answering every request with ``remote``'s answer, minus the write tools unless ``allow_writes``."""
    write_tools: set[str] = set()

    async def list_tools(ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        listed = await remote.list_tools(cursor=params.cursor if params else None)
        write_tools.update(t.name for t in listed.tools if is_write_tool(t))
        tools = [t for t in listed.tools if allow_writes or not is_write_tool(t)]
        return ListToolsResult(tools=tools, next_cursor=listed.next_cursor)

    async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        if not allow_writes:
            if not write_tools:
                await list_tools(ctx, None)
            if params.name in write_tools:
                message = (
                    f"`{params.name}` changes data, and this MCP server is read-only: start `alexandria mcp` with "
                    "--allow-writes to enable the write tools."
                )
                return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
        return await remote.call_tool(params.name, params.arguments or {})

    async def list_resources(ctx: Any, params: PaginatedRequestParams | None) -> ListResourcesResult:
        return await remote.list_resources(cursor=params.cursor if params else None)

    async def list_templates(ctx: Any, params: PaginatedRequestParams | None) -> ListResourceTemplatesResult:
        return await remote.list_resource_templates(cursor=params.cursor if params else None)

    async def read_resource(ctx: Any, params: ReadResourceRequestParams) -> ReadResourceResult:
        return await remote.read_resource(str(params.uri))

    return Server(
        "alexandria",
        version="0.1.0",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )


async def serve_stdio(url: str, api_key: str, *, allow_writes: bool) -> None:
    """Connect to ``url``'s ``/mcp`` with ``api_key``, then serve stdio until stdin closes."""
    endpoint = url.rstrip("/") + "/mcp"
    headers = {"Authorization": f"Bearer {api_key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120, connect=10)) as http,
        Client(streamable_http_client(endpoint, http_client=http)) as remote,
    ):
        print(f"alexandria mcp: connected to {endpoint} ({remote.protocol_version})", file=sys.stderr)
        server = proxy(remote, allow_writes=allow_writes)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
