"""``/mcp`` in ``alexandria serve``: the MCP server over Streamable HTTP, stateless (any of N API processes can answer
any request; both the 2026 stateless revision and handshake-era clients), authenticated with Alexandria's API keys
as bearer tokens.

Order of the checks on every request: ``Host`` and ``Origin`` (DNS-rebinding protection: ``421`` / ``403``), POST
only (``405``: no session to delete, nothing to stream on a GET), then the bearer key (``401`` with
``WWW-Authenticate: Bearer``), then the MCP SDK's own transport (``Accept``, protocol version, JSON-RPC). The key
travels to the tools in a context variable and is re-checked, with its scope, by every
tool call (``scope.principal``)."""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from alexandria.api.deps import BEARER
from alexandria.config import Settings
from alexandria.errors import Unauthenticated
from alexandria.services.core import Core

if TYPE_CHECKING:
    from mcp.server.transport_security import TransportSecuritySettings

MCP_PATH = "/mcp"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

_token: contextvars.ContextVar[str | None] = contextvars.ContextVar("alexandria_mcp_token", default=None)


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Allowed ``Host`` and ``Origin`` values: loopback names on any port, plus ``settings.mcp_allowed_hosts`` and
    ``settings.mcp_allowed_origins`` (for a server reached under a real name)."""
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
    origins += ["http://127.0.0.1", "http://localhost", "http://[::1]"]
    from mcp.server.transport_security import TransportSecuritySettings

    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts + list(settings.mcp_allowed_hosts),
        allowed_origins=origins + list(settings.mcp_allowed_origins),
    )


def _unauthorized(message: str, error: str) -> Response:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}}
    challenge = f'Bearer realm="alexandria", error="{error}", error_description="{message}"'
    return Response(json.dumps(body), status_code=401, media_type="application/json",
                    headers={"WWW-Authenticate": challenge})  # fmt: skip


class McpHttp:
    """The ASGI app answering ``/mcp``. The MCP server is built, and its task group runs, while ``lifespan()`` is
    entered (the host app's lifespan): apps that are never started (most tests) pay nothing for it."""

    def __init__(self, core: Core, settings: Settings) -> None:
        self.core = core
        self.settings = settings
        self.app: ASGIApp | None = None
        self.checks: Any = None

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        from mcp.server.transport_security import TransportSecurityMiddleware

        from alexandria.api.mcp.server import AlexandriaMCP

        server = AlexandriaMCP(self.core, _token.get)
        security = transport_security(self.settings)
        app = server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            stateless_http=True,
            json_response=True,
            transport_security=security,
            max_request_body_size=int(self.settings.max_body_mb * 1024 * 1024),
            host=self.settings.host,
        )
        async with server.session_manager.run():
            self.checks, self.app = TransportSecurityMiddleware(security), app
            try:
                yield
            finally:
                self.app = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is None:
            body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": "The MCP door is not running."}}
            await Response(json.dumps(body), status_code=503, media_type="application/json")(scope, receive, send)
            return
        request = Request(scope)
        refused = await self.checks.validate_request(request)
        if refused is not None:
            await refused(scope, receive, send)
            return
        if request.method != "POST":
            # stateless: no session to delete and no server-initiated messages to stream on a GET (the 2026
            # revision's answer to handshake-era GET/DELETE; those clients then carry on with POSTs alone)
            await Response(status_code=405, headers={"Allow": "POST"})(scope, receive, send)
            return
        match = BEARER.match(request.headers.get("authorization", ""))
        if match is None:
            answer = _unauthorized("Send an Alexandria API key as `Authorization: Bearer <key>`.", "invalid_request")
            await answer(scope, receive, send)
            return
        token = match.group(1)
        try:
            await anyio.to_thread.run_sync(self.core.keys.authenticate, token)
        except Unauthenticated:
            await _unauthorized("The API key is invalid or disabled.", "invalid_token")(scope, receive, send)
            return
        reset = _token.set(token)
        try:
            await self.app(scope, receive, send)
        finally:
            _token.reset(reset)


class WithMcp:
    """Sends ``/mcp`` to the MCP door and everything else to ``app``."""

    def __init__(self, app: ASGIApp, mcp: McpHttp) -> None:
        self.app = app
        self.mcp = mcp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == MCP_PATH:
            await self.mcp(scope, receive, send)
        else:
            await self.app(scope, receive, send)
