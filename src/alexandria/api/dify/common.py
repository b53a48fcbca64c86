"""What every Dify route shares: key authentication (``validate_dataset_token``), dataset resolution, JSON bodies
and query parameters, all failing in Dify's envelope."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Request

from alexandria.api.deps import get_core, run_sync
from alexandria.api.dify.errors import WWW_AUTHENTICATE, dify_error, from_domain
from alexandria.api.edge import BadJSON, parse_json
from alexandria.domain.limits import INT64_MAX
from alexandria.domain.models import DataSource, Principal
from alexandria.errors import Unauthenticated
from alexandria.services.access import AccessDenied, AccessService
from alexandria.services.core import Core

P = ParamSpec("P")
T = TypeVar("T")

DifyAuth = Principal


def _unauthorized(message: str) -> Exception:
    return dify_error(401, "unauthorized", message, WWW_AUTHENTICATE)


async def checked(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn`` (an access check of ``core.access``) run off the event loop; a refusal becomes Dify's error."""
    try:
        return await run_sync(fn, *args, **kwargs)
    except AccessDenied as exc:
        raise from_domain(exc) from exc


async def authenticate(request: Request) -> DifyAuth:
    """Dify's ``validate_dataset_token``: ``Authorization: Bearer <key>`` → the key's workspace (dify-behaviour §5).
    Any key of the workspace with a role that may write (admin, builder, system) acts as the workspace owner, within
    the key's scope (its groups' spaces, its bound dataset), checked by ``core.access``."""
    core = get_core(request)
    header = request.headers.get("authorization")
    if not header or " " not in header:
        raise _unauthorized("Authorization header must be provided and start with 'Bearer'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise _unauthorized("Authorization scheme must be 'Bearer'")
    try:
        key = await run_sync(core.keys.authenticate, token.strip())
    except Unauthenticated as exc:
        raise _unauthorized("Access token is invalid") from exc
    ws = await run_sync(core.catalog.workspace_by_id, key.workspace_id)
    if ws is None:
        raise _unauthorized("Tenant does not exist.")
    return await checked(core.access.principal, ws, key)


AuthDep = Annotated[DifyAuth, Depends(authenticate)]
CoreDep = Annotated[Core, Depends(get_core)]


def require_unbound(auth: DifyAuth) -> None:
    """Routes about no single dataset (list, create, tags, models) refuse a key bound to one dataset (403)."""
    try:
        AccessService.require_unbound(auth)
    except AccessDenied as exc:
        raise from_domain(exc) from exc


async def resolve_dataset(core: Core, auth: DifyAuth, dataset_id: str) -> DataSource:
    """The dataset ``dataset_id`` within the key's scope: 404 if the tenant has none, 403 if the key may not use
    it, 403 if its API access is disabled."""
    _, ds = await checked(core.access.dataset, auth, dataset_id)
    if ds.dify.get("enable_api") is False:
        raise dify_error(403, "forbidden", "Dataset api access is not enabled.")
    return ds


async def json_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The JSON object body; an empty or undecodable body is Dify's 400 ``bad_request``."""
    raw = await request.body()
    if not raw.strip():
        if not required:
            return {}
        raise dify_error(400, "bad_request", "Invalid JSON payload received or JSON payload is empty.")
    body = parse_json_param(raw)
    if not isinstance(body, dict):
        raise dify_error(400, "invalid_param", "The JSON body must be an object.")
    return body


def parse_json_param(raw: bytes | str, name: str | None = None) -> Any:
    """``raw`` parsed and checked at the edge (``alexandria.api.edge``): malformed JSON is Dify's 400 ``bad_request``
    (or ``invalid_param`` for the form field ``name``), JSON out of bounds 400 ``invalid_param``."""
    try:
        return parse_json(raw)
    except BadJSON as exc:
        if exc.malformed and name is None:
            raise dify_error(400, "bad_request", "Invalid JSON payload received or JSON payload is empty.") from exc
        raise invalid_param(f"{name} is not valid: {exc.message}" if name else exc.message) from exc


def invalid_param(message: str) -> Exception:
    return dify_error(400, "invalid_param", message)


def get_str(body: Mapping[str, Any], key: str, *, required: bool = False, max_len: int | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise invalid_param(f"{key} is required.")
        return None
    if not isinstance(value, str):
        raise invalid_param(f"{key} must be a string.")
    if max_len is not None and len(value) > max_len:
        raise invalid_param(f"{key} must be at most {max_len} characters.")
    return value


MAX_PAGE_SIZE = 100
"""The most items one page of a Dify list holds, whatever ``limit`` asks."""


def page_params(request: Request, default_limit: int = 20) -> tuple[int, int]:
    """``page`` (from 1) and ``limit`` (as requested; callers cap the page size at ``MAX_PAGE_SIZE``), bounded so
    that the offset of the page fits a signed 64-bit integer."""
    bounds = {"page": INT64_MAX // MAX_PAGE_SIZE, "limit": INT64_MAX}
    out = []
    for name, default in (("page", 1), ("limit", default_limit)):
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            out.append(default)
            continue
        try:
            value = int(raw)
        except ValueError as exc:
            raise invalid_param(f"{name} must be an integer.") from exc
        if value < 1:
            raise invalid_param(f"{name} must be at least 1.")
        if value > bounds[name]:
            raise invalid_param(f"{name} must be at most {bounds[name]}.")
        out.append(value)
    return out[0], out[1]


def op_id(method: str, path: str) -> str:
    """A unique OpenAPI operation id for a route served under several paths."""
    spelled = path.replace("-", "_hyphen_")  # create-by-text and create_by_text are two routes
    return "dify_" + method.lower() + "_" + "".join(c if c.isalnum() else "_" for c in spelled).strip("_")
