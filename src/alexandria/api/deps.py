"""Request-scoped helpers shared by the dialects: the core, thread offloading, JSON bodies, bearer tokens."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
from fastapi import Request

from alexandria.api.edge import BadJSON, parse_json
from alexandria.services.core import Core

__all__ = ["BadJSON", "bearer_token", "get_core", "json_body", "run_sync"]

P = ParamSpec("P")
T = TypeVar("T")

BEARER = re.compile(r"^Bearer\s+([A-Za-z0-9\-._~+/]+=*)$")


def get_core(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


async def run_sync(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking core work (storage, embedding) off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def bearer_token(request: Request) -> str | None:
    m = BEARER.match(request.headers.get("authorization", ""))
    return m.group(1) if m else None


async def json_body(request: Request) -> Any:
    """The parsed JSON body (``None`` when empty), checked at the edge (``alexandria.api.edge``); ``BadJSON``."""
    raw = await request.body()
    return parse_json(raw) if raw.strip() else None
