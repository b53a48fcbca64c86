"""What every Dust route shares: authentication, resolution of spaces and data sources with permission checks,
body and query-parameter parsing, all failing in Dust's error envelope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from alexandria.api.deps import BadJSON, bearer_token, get_core, json_body, run_sync
from alexandria.api.dust.errors import dust_error, from_domain
from alexandria.domain.limits import INT64_MAX, INT64_MIN, in_int64
from alexandria.domain.models import DataSource, Principal, Space
from alexandria.errors import Unauthenticated
from alexandria.services.access import AccessDenied, AccessService
from alexandria.services.core import Core

M = TypeVar("M", bound=BaseModel)
P = ParamSpec("P")
T = TypeVar("T")

Auth = Principal


async def checked(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn`` (an access check of ``core.access``) run off the event loop; a refusal becomes Dust's error."""
    try:
        return await run_sync(fn, *args, **kwargs)
    except AccessDenied as exc:
        raise from_domain(exc) from exc


async def authenticate(request: Request, wId: str) -> Principal:
    """Dust's ``withPublicAPIAuthentication``: bearer key → workspace, role and groups (dust-behaviour.md §1.3);
    the key's scope is checked by ``core.access``."""
    core = get_core(request)
    token = bearer_token(request)
    if token is None:
        raise dust_error(401, "not_authenticated", "The request does not have valid authentication credentials.")
    try:
        key = await run_sync(core.keys.authenticate, token)
    except Unauthenticated as exc:
        raise dust_error(401, "invalid_api_key_error", "The API key provided is invalid or disabled.") from exc
    ws = await run_sync(core.catalog.find_workspace, wId)
    if ws is None:
        raise dust_error(404, "workspace_not_found", "The workspace was not found.")
    header = request.headers.get("x-dust-group-ids")
    wanted = {g.strip() for g in header.split(",") if g.strip()} if header else None
    return await checked(core.access.principal, ws, key, wanted)


AuthDep = Annotated[Principal, Depends(authenticate)]
CoreDep = Annotated[Core, Depends(get_core)]


def paths(suffix: str) -> list[str]:
    """A data-source route and its legacy form without ``/spaces/{spaceId}`` (the global space)."""
    return [f"/spaces/{{spaceId}}/data_sources/{{dsId}}{suffix}", f"/data_sources/{{dsId}}{suffix}"]


async def resolve_space(core: Core, auth: Principal, space_id: str) -> Space:
    return await checked(core.access.space, auth, space_id)


async def resolve_data_source(
    core: Core, auth: Principal, space_id: str | None, ds_id: str
) -> tuple[Space, DataSource]:
    """The data source ``ds_id`` (sId or name) of space ``space_id``, or of the global space on legacy routes (a
    system key reaches any space's data source there). 404 if missing, elsewhere, or out of the key's scope."""
    return await checked(core.access.data_source, auth, ds_id, space_id)


def require_write(
    auth: Principal, space: Space, message: str = "You are not allowed to update data in this data source."
) -> None:
    """403 ``data_source_auth_error`` unless the caller may write in ``space`` (system keys always may)."""
    try:
        AccessService.require_write(auth, space, message)
    except AccessDenied as exc:
        raise from_domain(exc) from exc


def require_unmanaged(auth: Principal, ds: DataSource, message: str) -> None:
    """403 ``data_source_auth_error`` on a managed (connector) data source unless the caller is a system key."""
    try:
        AccessService.require_unmanaged(auth, ds, message)
    except AccessDenied as exc:
        raise from_domain(exc) from exc


async def read_body(request: Request) -> Any:
    """The parsed JSON body (``None`` when empty); 400 ``invalid_request_error`` on malformed JSON."""
    try:
        return await json_body(request)
    except BadJSON as exc:
        raise dust_error(400, "invalid_request_error", f"Invalid request body: {exc.message}") from exc


async def read_object(request: Request) -> dict[str, Any]:
    raw = await read_body(request)
    if not isinstance(raw, dict):
        raise dust_error(400, "invalid_request_error", "Invalid request body: expected a JSON object.")
    return raw


def validation_message(exc: ValidationError, prefix: str = "Invalid request body: ") -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f'{err["msg"]} at "{loc}"' if loc else str(err["msg"]))
    return prefix + "Validation error: " + "; ".join(parts)


def validate(model: type[M], raw: Any) -> M:
    """``model`` from a parsed body; 400 ``invalid_request_error`` with zod-like messages on failure."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise dust_error(400, "invalid_request_error", validation_message(exc)) from exc


def int_param(value: str | None, name: str, default: int) -> int:
    """A non-negative integer query parameter."""
    if value is None or value == "":
        return default
    try:
        out = int(value)
    except ValueError as exc:
        raise dust_error(
            400, "invalid_request_error", f"Invalid query parameters: `{name}` must be an integer."
        ) from exc
    if out < 0:
        raise dust_error(400, "invalid_request_error", f"Invalid query parameters: `{name}` must be non-negative.")
    if out > INT64_MAX:
        raise dust_error(
            400, "invalid_request_error", f"Invalid query parameters: `{name}` must be at most {INT64_MAX}."
        )
    return out


def number_param(value: str | None, name: str) -> int | None:
    """A coerced number (zod ``z.coerce.number()``), truncated to an integer."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError as exc:
        raise dust_error(
            400, "invalid_request_error", f'Invalid query parameters: Expected number, received nan at "{name}"'
        ) from exc
    if number != number or number in (float("inf"), float("-inf")):
        raise dust_error(400, "invalid_request_error", f"Invalid query parameters: `{name}` must be finite.")
    if not in_int64(int(number)):
        raise dust_error(
            400, "invalid_request_error", f"Invalid query parameters: `{name}` must be within {INT64_MIN}..{INT64_MAX}."
        )
    return int(number)
