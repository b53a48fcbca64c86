"""Request-scoped helpers shared by the dialects: the core, thread offloading, JSON bodies, bearer tokens."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
from fastapi import Request

from alexandria.services.core import Core

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


class BadJSON(ValueError):
    pass


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw.strip() else None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadJSON(f"malformed JSON body: {exc}") from exc
