"""The ASGI application: the dialects over one core, errors rendered in each dialect's envelope; the MCP door at
``/mcp`` (api/mcp/http.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alexandria.api import openapi
from alexandria.api.admission import WriteAdmission
from alexandria.api.dify import errors as dify_errors
from alexandria.api.dify.datasets import router as dify_datasets_router
from alexandria.api.dify.documents import router as dify_documents_router
from alexandria.api.dify.files import router as dify_files_router
from alexandria.api.dify.pipeline import router as dify_pipeline_router
from alexandria.api.dify.segments import router as dify_segments_router
from alexandria.api.dust import errors as dust_errors
from alexandria.api.dust.routes import router as dust_router
from alexandria.api.dust.tables import router as dust_tables_router
from alexandria.api.dust.views import router as dust_views_router
from alexandria.api.edge import target_error
from alexandria.api.errors import DialectError
from alexandria.api.mcp.http import McpHttp, WithMcp
from alexandria.api.routing import allowed_methods
from alexandria.config import Settings
from alexandria.errors import AlexandriaError
from alexandria.services.core import Core

log = logging.getLogger(__name__)


def dialect_error(path: str, status: int, type_: str, message: str, dify_code: str | None = None) -> DialectError:
    """An error in the envelope of the dialect that owns ``path`` (Dify under ``/v1/``, Dust elsewhere); ``type_``
    is Dust's error type, translated for Dify (unless ``dify_code`` is given)."""
    if dify_errors.is_dify_path(path):
        code = dify_code or _DIFY_CODES.get(type_, "bad_request" if status == 400 else "unknown")
        if status == 404:
            message = dify_errors.ROUTE_NOT_FOUND
        headers = dify_errors.WWW_AUTHENTICATE if status == 401 else None
        return DialectError(status, {"code": code, "message": message, "status": status}, headers)
    return DialectError(status, {"error": {"type": type_, "message": message}})


def _dialect_error(path: str, status: int, type_: str, message: str) -> JSONResponse:
    err = dialect_error(path, status, type_, message)
    return JSONResponse(err.body, status_code=err.status, headers=err.headers or None)


# Dust error types the app itself raises -> Dify codes (werkzeug's snake_case class names)
_DIFY_CODES = {
    "not_found": "not_found",
    "method_not_supported_error": "method_not_allowed",
    "content_too_large": "request_entity_too_large",
    "invalid_request_error": "invalid_param",
    "internal_server_error": "unknown",
}


class TargetCheck:
    """Refuses a request whose target breaks the edge's text rule (``edge.target_error``) with the dialect's 400."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            problem = target_error(path, scope.get("query_string", b""))
            if problem is not None:
                await _dialect_error(path, 400, "invalid_request_error", problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413 before any handler reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        path = scope.get("path", "")
        message = f"Request body exceeds {self.limit} bytes."
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _dialect_error(path, 413, "content_too_large", message)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            # a body without Content-Length (chunked) is counted as it arrives: the handler reading it gets the
            # dialect's 413 (rendered by the app's DialectError handler) before it has read more than the limit
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.limit:
                    raise dialect_error(path, 413, "content_too_large", message)
            return msg

        await self.app(scope, limited_receive, send)


def create_app(settings: Settings, core: Core | None = None, workers: int | None = None) -> FastAPI:
    """The app over ``core`` (built from ``settings`` and owned by the app if None). ``workers`` in-process index
    workers run while the app is up (default: ``settings.workers`` if the app owns its core, else none)."""
    owned = core is None
    n_workers = workers if workers is not None else (settings.workers if owned else 0)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_core: Core = app.state.core
        if n_workers > 0:
            the_core.jobs.start_workers(n_workers)
        try:
            async with mcp_door.lifespan():  # the MCP door's task group (api/mcp/http.py)
                yield
        finally:
            if n_workers > 0:
                await anyio.to_thread.run_sync(the_core.jobs.stop_workers)  # lets batches in flight finish
            if owned:
                the_core.close()

    app = FastAPI(title="Alexandria", version="0.1.0", lifespan=lifespan)
    app.state.core = core or Core(settings)
    app.state.write_admission = WriteAdmission.from_settings(settings)
    mcp_door = McpHttp(app.state.core, settings)
    routers = (
        dust_router,
        dust_tables_router,
        dust_views_router,
        dify_datasets_router,
        dify_documents_router,
        dify_segments_router,
        dify_files_router,
        dify_pipeline_router,
    )
    for router in routers:
        app.include_router(router)
    all_routes = [route for router in routers for route in router.routes]
    openapi.install(app)

    @app.exception_handler(DialectError)
    async def on_dialect_error(request: Request, exc: DialectError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(AlexandriaError)
    async def on_domain_error(request: Request, exc: AlexandriaError) -> JSONResponse:
        is_dify = dify_errors.is_dify_path(request.url.path)
        err = dify_errors.from_domain(exc) if is_dify else dust_errors.from_domain(exc)
        if err.status >= 500:
            log.error("domain error on %s: %s", request.url.path, exc)
        return JSONResponse(err.body, status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _dialect_error(request.url.path, 400, "invalid_request_error", f"Invalid request: {exc.errors()}")

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            allowed = allowed_methods(all_routes, request.url.path)
            if allowed:
                answer = _dialect_error(
                    request.url.path, 405, "method_not_supported_error", "The method passed is not supported."
                )
                answer.headers["Allow"] = ", ".join(allowed)
                return answer
        if exc.status_code in (404, 405):  # 405 here: Dify ids that are not UUIDs match no route
            return _dialect_error(request.url.path, 404, "not_found", "The requested route does not exist.")
        return _dialect_error(request.url.path, exc.status_code, "invalid_request_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return _dialect_error(request.url.path, 500, "internal_server_error", f"Unhandled internal server error: {exc}")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"ok": True}

    limited: Any = BodyLimit(TargetCheck(WithMcp(app, mcp_door)), int(settings.max_body_mb * 1024 * 1024))
    app.state.asgi = limited
    return app


def create_asgi(settings: Settings, core: Core | None = None, workers: int | None = None) -> ASGIApp:
    """The app wrapped in the body-size limit (what servers and tests should run)."""
    app = create_app(settings, core, workers)
    asgi: ASGIApp = app.state.asgi
    return asgi
