"""What every Dust route shares: authentication, resolution of spaces and data sources with permission checks,
body and query-parameter parsing, all failing in Dust's error envelope."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from alexandria.api.deps import BadJSON, bearer_token, get_core, json_body, run_sync
from alexandria.api.dust.errors import dust_error
from alexandria.domain.limits import INT64_MAX, INT64_MIN, in_int64
from alexandria.domain.models import DataSource, Principal, Role, Space
from alexandria.errors import Unauthenticated
from alexandria.services import permissions
from alexandria.services.core import Core

M = TypeVar("M", bound=BaseModel)

Auth = Principal


async def authenticate(request: Request, wId: str) -> Principal:
    """Dust's ``withPublicAPIAuthentication``: bearer key → workspace, role and groups (dust-behaviour.md §1.3)."""
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
    if key.workspace_id != ws.id or key.role not in (Role.ADMIN, Role.BUILDER, Role.SYSTEM):
        raise dust_error(401, "workspace_auth_error", "Only users of the workspace can access this route.")
    groups = await run_sync(core.spaces.key_group_ids, ws, key)
    if key.is_system and request.headers.get("x-dust-group-ids"):
        # a system key may act with a chosen set of the workspace's groups
        wanted = {g.strip() for g in request.headers["x-dust-group-ids"].split(",") if g.strip()}
        groups = frozenset(wanted & groups)
    return Principal(ws, key, groups)


AuthDep = Annotated[Principal, Depends(authenticate)]
CoreDep = Annotated[Core, Depends(get_core)]


def paths(suffix: str) -> list[str]:
    """A data-source route and its legacy form without ``/spaces/{spaceId}`` (the global space)."""
    return [f"/spaces/{{spaceId}}/data_sources/{{dsId}}{suffix}", f"/data_sources/{{dsId}}{suffix}"]


SPACE_NOT_FOUND = (404, "space_not_found", "The space you requested was not found.")
DATA_SOURCE_NOT_FOUND = (404, "data_source_not_found", "The data source you requested was not found.")


async def resolve_space(core: Core, auth: Principal, space_id: str) -> Space:
    space = await run_sync(core.catalog.find_space, auth.workspace, space_id)
    if space is None or not permissions.can_read(auth, space):
        raise dust_error(*SPACE_NOT_FOUND)
    return space


async def resolve_data_source(
    core: Core, auth: Principal, space_id: str | None, ds_id: str
) -> tuple[Space, DataSource]:
    """The data source ``ds_id`` (sId or name) of space ``space_id``, or of the global space on legacy routes (a
    system key reaches any space's data source there). 404 if missing, elsewhere, or not readable by the caller."""
    if space_id is not None:
        space = await resolve_space(core, auth, space_id)
    else:
        space = await run_sync(core.catalog.global_space, auth.workspace)
    ds = await run_sync(core.catalog.find_data_source, auth.workspace, ds_id)
    if ds is None:
        raise dust_error(*DATA_SOURCE_NOT_FOUND)
    if ds.space_id != space.id:
        if not (auth.is_system and space_id is None):
            raise dust_error(*DATA_SOURCE_NOT_FOUND)
        own = await run_sync(core.catalog.space_by_id, ds.space_id)
        if own is None:
            raise dust_error(*DATA_SOURCE_NOT_FOUND)
        space = own
    if not permissions.can_read(auth, space):
        raise dust_error(*DATA_SOURCE_NOT_FOUND)
    return space, ds


def require_write(
    auth: Principal, space: Space, message: str = "You are not allowed to update data in this data source."
) -> None:
    """403 ``data_source_auth_error`` unless the caller may write in ``space`` (system keys always may)."""
    if not permissions.can_write(auth, space):
        raise dust_error(403, "data_source_auth_error", message)


def require_unmanaged(auth: Principal, ds: DataSource, message: str) -> None:
    """403 ``data_source_auth_error`` on a managed (connector) data source unless the caller is a system key."""
    if ds.connector_provider is not None and not auth.is_system:
        raise dust_error(403, "data_source_auth_error", message)


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
