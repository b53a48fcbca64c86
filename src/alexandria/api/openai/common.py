"""What every OpenAI route shares: bearer-key authentication, resolving a vector store within the key's scope, JSON
bodies, and cursor pagination (``after``, ``before``, ``limit``, ``order``), all failing in OpenAI's error body."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Request

from alexandria.api.deps import get_core, run_sync
from alexandria.api.edge import BadJSON, parse_json
from alexandria.api.openai.errors import bad_request, from_domain, not_found, unauthorized
from alexandria.domain.models import DataSource, Principal, Space
from alexandria.domain.openai import STORE_PREFIX, strip_prefix
from alexandria.errors import AlexandriaError, Unauthenticated
from alexandria.services.access import AccessDenied, AccessService
from alexandria.services.core import Core

P = ParamSpec("P")
T = TypeVar("T")


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn`` (core work) off the event loop; a domain error becomes OpenAI's error."""
    try:
        return await run_sync(fn, *args, **kwargs)
    except AlexandriaError as exc:
        raise from_domain(exc) from exc


async def authenticate(request: Request) -> Principal:
    """``Authorization: Bearer <Alexandria API key>`` → the key acting in its workspace, within its scope."""
    core = get_core(request)
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized(
            "You didn't provide an API key. You need to provide your API key in an Authorization header using "
            "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
    try:
        key = await run_sync(core.keys.authenticate, token.strip())
    except Unauthenticated as exc:
        raise unauthorized("Incorrect API key provided.") from exc
    ws = await run_sync(core.catalog.workspace_by_id, key.workspace_id)
    if ws is None:
        raise unauthorized("Incorrect API key provided.")
    return await call(core.access.principal, ws, key)


AuthDep = Annotated[Principal, Depends(authenticate)]
CoreDep = Annotated[Core, Depends(get_core)]


def require_unbound(who: Principal) -> None:
    """Routes about no single vector store (create one) refuse a key bound to one (403)."""
    try:
        AccessService.require_unbound(who)
    except AccessDenied as exc:
        raise from_domain(exc) from exc


async def resolve_store(core: Core, who: Principal, vector_store_id: str, *, write: bool = False) -> DataSource:
    """The vector store ``vs_<uuid>`` within the key's scope (404 otherwise); with ``write``, one the key may write
    (403 otherwise)."""
    missing = f"No vector store found with id '{vector_store_id}'."
    uuid = strip_prefix(vector_store_id, STORE_PREFIX)
    if uuid is None:
        raise not_found(missing)
    try:
        space, ds = await run_sync(core.access.dataset, who, uuid)
        if write:
            await run_sync(_require_write, who, space, ds)
    except AlexandriaError as exc:
        raise from_domain(exc, missing) from exc
    return ds


def _require_write(who: Principal, space: Space, ds: DataSource) -> None:
    message = "This API key may not write in this vector store."
    AccessService.require_write(who, space, message)
    AccessService.require_unmanaged(who, ds, message)


async def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise bad_request("We could not parse the JSON body of your request: the body is empty.")
        return {}
    try:
        body = parse_json(raw)
    except BadJSON as exc:
        raise bad_request(
            f"We could not parse the JSON body of your request. ({exc.message})", code="invalid_json"
        ) from exc
    if not isinstance(body, dict):
        raise bad_request("The JSON body of your request must be an object.", code="invalid_json")
    return body


# --- cursor pagination -------------------------------------------------------------------------------------------
class Page:
    """Query parameters of a list: ``limit`` (1..``max_limit``), ``order`` (``asc``|``desc``), ``after``/``before``
    (an id of the listing)."""

    def __init__(self, request: Request, default_limit: int = 20, max_limit: int = 100) -> None:
        params = request.query_params
        raw = params.get("limit")
        if raw is None or raw == "":
            self.limit = default_limit
        else:
            try:
                self.limit = int(raw)
            except ValueError as exc:
                raise bad_request(f"Invalid 'limit': expected an integer, got {raw!r}.", "limit") from exc
            if not 1 <= self.limit <= max_limit:
                raise bad_request(
                    f"Invalid 'limit': integer must be between 1 and {max_limit}, got {self.limit}.", "limit"
                )
        self.order = params.get("order") or "desc"
        if self.order not in ("asc", "desc"):
            raise bad_request(f"Invalid 'order': expected 'asc' or 'desc', got {self.order!r}.", "order")
        self.after = params.get("after") or None
        self.before = params.get("before") or None

    def slice(self, items: Sequence[T], id_of: Callable[[T], str]) -> tuple[list[T], bool]:
        """The page of ``items`` (oldest first) and whether more follow in the listing's order."""
        ordered = list(items) if self.order == "asc" else list(reversed(items))
        ids = [id_of(i) for i in ordered]
        if self.after is not None:
            if self.after not in ids:
                raise bad_request(f"Invalid 'after': no object with id {self.after!r} in this list.", "after")
            ordered = ordered[ids.index(self.after) + 1 :]
            ids = ids[ids.index(self.after) + 1 :]
        if self.before is not None:
            if self.before not in ids:
                raise bad_request(f"Invalid 'before': no object with id {self.before!r} in this list.", "before")
            ordered = ordered[: ids.index(self.before)]
            page = ordered[-self.limit :]
            return page, len(ordered) > len(page)
        return ordered[: self.limit], len(ordered) > self.limit


def list_body(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
