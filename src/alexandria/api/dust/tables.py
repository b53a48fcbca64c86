"""Dust's tables and rows API (``.../data_sources/{dsId}/tables...``), CSV upload, and read-only SQL over tables
(``POST /api/v1/w/{wId}/query_tables``). Shapes and statuses: dust-behaviour.md §2.8, §4 and §6.3; the deliberate
differences are listed in the README ("Tables and SQL")."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import time
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr

from alexandria.api.deps import run_sync
from alexandria.api.dust.common import (
    AuthDep,
    CoreDep,
    checked,
    int_param,
    paths,
    read_object,
    require_write,
    resolve_data_source,
    validate,
)
from alexandria.api.dust.errors import dust_error
from alexandria.api.edge import BadJSON, parse_json, text_error
from alexandria.domain.models import DataSource, Principal
from alexandria.domain.tables import Table, TableRow
from alexandria.errors import InvalidRequest
from alexandria.services.core import Core
from alexandria.services.sql_pool import SqlPoolFull
from alexandria.services.tables import TableRef, TableUpsert
from alexandria.tables.errors import (
    InvalidCsv,
    InvalidRows,
    QueryFailed,
    TableNameNotUnique,
    TableNotFound,
    TableRowNotFound,
)
from alexandria.tables.schema import schema_to_json
from alexandria.tables.values import parse_rows

router = APIRouter(prefix="/api/v1/w/{wId}")

P = ParamSpec("P")
T = TypeVar("T")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class UpsertTableBody(_Body):
    name: StrictStr
    description: StrictStr
    title: StrictStr
    table_id: StrictStr | None = None
    timestamp: StrictInt | StrictFloat | None = None
    tags: list[StrictStr] | None = None
    parent_id: StrictStr | None = None
    parents: list[StrictStr] | None = None
    remote_database_table_id: StrictStr | None = None
    remote_database_secret_id: StrictStr | None = None
    mime_type: StrictStr | None = None
    source_url: StrictStr | None = None


class TableParentsBody(_Body):
    parents: list[StrictStr]
    parent_id: StrictStr | None = None


class UpsertRowsBody(_Body):
    rows: list[Any]
    truncate: StrictBool | None = None


class CsvBody(_Body):
    name: StrictStr
    description: StrictStr
    title: StrictStr | None = None
    tableId: StrictStr | None = None
    truncate: StrictBool | None = None
    timestamp: StrictInt | StrictFloat | None = None
    tags: list[StrictStr] | None = None
    mimeType: StrictStr | None = None
    sourceUrl: StrictStr | None = None
    parentId: StrictStr | None = None
    parents: list[StrictStr] | None = None
    csv: StrictStr | None = None


class QueryTableRefBody(_Body):
    data_source_id: StrictStr
    table_id: StrictStr
    space_id: StrictStr | None = None


class QueryTablesBody(_Body):
    query: StrictStr
    tables: list[QueryTableRefBody]


# --- rendering and errors ----------------------------------------------------------------------------------------
def table_json(t: Table, *, with_parent_id: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": t.name,
        "table_id": t.table_id,
        "description": t.description,
        "schema": schema_to_json(t.schema),
        "timestamp": t.timestamp,
        "tags": list(t.tags),
        "parents": list(t.parents),
    }
    if with_parent_id:
        out["parent_id"] = t.parent_id
    out["mime_type"] = t.mime_type
    out["title"] = t.title
    return out


def row_json(row: TableRow) -> dict[str, Any]:
    return {"row_id": row.row_id, "value": row.value}


async def call(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking table work off the event loop, with the tables' domain errors in Dust's envelope."""
    with table_errors():
        return await run_sync(fn, *args, **kwargs)


@contextlib.contextmanager
def table_errors() -> Iterator[None]:
    """The tables' domain errors, in Dust's envelope."""
    try:
        yield
    except TableNotFound as exc:
        raise dust_error(404, "table_not_found", exc.message) from exc
    except TableRowNotFound as exc:
        raise dust_error(
            404, "invalid_request_error", "Failed to get row.", {"code": exc.code, "message": exc.message}
        ) from exc
    except TableNameNotUnique as exc:
        raise dust_error(
            400,
            "invalid_request_error",
            "Failed to upsert table (table names must be unique).",
            {"code": exc.code, "message": exc.message},
        ) from exc
    except InvalidCsv as exc:
        raise dust_error(400, "invalid_rows_request_error", exc.message) from exc
    except QueryFailed as exc:
        raise dust_error(400, "data_source_error", exc.message, {"code": exc.code, "message": exc.message}) from exc
    except InvalidRows as exc:
        raise dust_error(400, "invalid_request_error", exc.message) from exc
    except SqlPoolFull as exc:
        # Dust's own 429 (its upsert rate limit): its SDK treats 429 as transient and retries; a 400 would tell an
        # agent to rewrite a query that was fine
        err = dust_error(429, "rate_limit_error", exc.message)
        err.headers["Retry-After"] = str(exc.retry_after)
        raise err from exc


def _no_custom_hierarchy(auth: Principal, parents: list[str] | None, parent_id: str | None) -> None:
    if not auth.is_system and parents is not None:
        raise dust_error(
            400,
            "invalid_request_error",
            "Setting a custom hierarchy is not supported yet. Please omit the parents field.",
        )
    if not auth.is_system and parent_id:
        raise dust_error(
            400,
            "invalid_request_error",
            "Setting a custom hierarchy is not supported yet. Please omit the parent_id field.",
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- tables ------------------------------------------------------------------------------------------------------
async def list_tables(auth: AuthDep, core: CoreDep, dsId: str, spaceId: str | None = None) -> JSONResponse:
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    tables = await call(core.tables.list_all, ds)
    return JSONResponse({"tables": [table_json(t) for t in tables]})


async def upsert_table(
    request: Request, auth: AuthDep, core: CoreDep, dsId: str, spaceId: str | None = None
) -> JSONResponse:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_write(auth, space)
    body = validate(UpsertTableBody, await read_object(request))
    if auth.is_system:
        if not body.mime_type:
            raise dust_error(400, "invalid_request_error", "Invalid request body: mimeType must be provided.")
        if not body.title:
            raise dust_error(400, "invalid_request_error", "Invalid request body: title must be provided.")
    elif body.mime_type:
        raise dust_error(400, "invalid_request_error", "Invalid request body: mimeType must not be provided.")
    _no_custom_hierarchy(auth, body.parents, body.parent_id)
    req = TableUpsert(
        name=body.name,
        description=body.description,
        title=body.title,
        table_id=body.table_id or None,
        timestamp=body.timestamp,
        tags=tuple(body.tags or ()),
        parents=tuple(body.parents) if body.parents is not None else None,
        parent_id=body.parent_id,
        mime_type=body.mime_type,
        source_url=body.source_url,
        remote_database_table_id=body.remote_database_table_id,
        remote_database_secret_id=body.remote_database_secret_id,
    )
    table = await call(core.tables.upsert, ds, req, _now_ms())
    return JSONResponse({"table": table_json(table, with_parent_id=False)})


async def get_table(auth: AuthDep, core: CoreDep, dsId: str, tId: str, spaceId: str | None = None) -> JSONResponse:
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    table = await call(core.tables.get, ds, tId)
    if table is None:
        raise dust_error(404, "table_not_found", "Failed to get table.")
    return JSONResponse({"table": table_json(table)})


async def delete_table(auth: AuthDep, core: CoreDep, dsId: str, tId: str, spaceId: str | None = None) -> Response:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_write(auth, space)
    await call(core.tables.delete, ds, tId)
    return Response(status_code=200)


async def update_table_parents(
    request: Request, auth: AuthDep, core: CoreDep, dsId: str, tId: str, spaceId: str | None = None
) -> JSONResponse:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_write(auth, space)
    raw = await read_object(request)
    body = validate(TableParentsBody, raw)
    parent_id = body.parent_id
    if parent_id is None and "parent_id" not in raw and len(body.parents) >= 2:
        parent_id = body.parents[1]
    await call(core.tables.update_parents, ds, tId, body.parents, parent_id)
    return JSONResponse({"updated": True})


# --- rows --------------------------------------------------------------------------------------------------------
async def list_rows(
    request: Request, auth: AuthDep, core: CoreDep, dsId: str, tId: str, spaceId: str | None = None
) -> JSONResponse:
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    limit = int_param(request.query_params.get("limit"), "limit", 10)
    offset = int_param(request.query_params.get("offset"), "offset", 0)
    rows, total = await call(core.tables.list_rows, ds, tId, limit, offset)
    return JSONResponse({"rows": [row_json(r) for r in rows], "offset": offset, "limit": limit, "total": total})


async def upsert_rows(
    request: Request, auth: AuthDep, core: CoreDep, dsId: str, tId: str, spaceId: str | None = None
) -> JSONResponse:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_write(auth, space)
    body = validate(UpsertRowsBody, await read_object(request))
    try:
        rows = parse_rows(body.rows)
    except (InvalidRows, InvalidRequest) as exc:
        raise dust_error(400, "invalid_request_error", exc.message) from exc
    table = await call(core.tables.upsert_rows, ds, tId, rows, bool(body.truncate))
    return JSONResponse(
        {
            "table": {
                "name": table.name,
                "table_id": table.table_id,
                "description": table.description,
                "schema": schema_to_json(table.schema),
            }
        }
    )


async def get_row(
    auth: AuthDep, core: CoreDep, dsId: str, tId: str, rId: str, spaceId: str | None = None
) -> JSONResponse:
    _, ds = await resolve_data_source(core, auth, spaceId, dsId)
    row = await call(core.tables.get_row, ds, tId, rId)
    return JSONResponse({"row": row_json(row)})


async def delete_row(
    auth: AuthDep, core: CoreDep, dsId: str, tId: str, rId: str, spaceId: str | None = None
) -> JSONResponse:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_write(auth, space)
    await call(core.tables.delete_row, ds, tId, rId)
    return JSONResponse({"success": True})


# --- CSV ---------------------------------------------------------------------------------------------------------
def parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """The fields of a ``multipart/form-data`` body (repeated fields as lists; the ``file`` part as bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise dust_error(400, "invalid_request_error", "Invalid request body: malformed multipart/form-data.")
    fields: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name in ("file", "csv"):
            fields["csv"] = data
        elif name in ("tags", "parents"):
            fields.setdefault(name, []).append(data.decode("utf-8", "replace"))
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields


def _form_to_body(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(fields)
    if isinstance(out.get("truncate"), str):
        out["truncate"] = {"true": True, "false": False, "1": True, "0": False, "": None}.get(
            out["truncate"].strip().lower(), out["truncate"]
        )
    if isinstance(out.get("timestamp"), str):
        with contextlib.suppress(ValueError):  # else left a string, which validation refuses
            out["timestamp"] = float(out["timestamp"]) if out["timestamp"].strip() else None
    for key in ("tags", "parents"):
        values = out.get(key)
        if isinstance(values, list) and len(values) == 1 and values[0].lstrip().startswith("["):
            with contextlib.suppress(BadJSON):  # else left a string, which validation refuses
                out[key] = parse_json(values[0])
    return out


async def upsert_csv(request: Request, auth: AuthDep, core: CoreDep, dsId: str, spaceId: str | None = None) -> Any:
    space, ds = await resolve_data_source(core, auth, spaceId, dsId)
    require_write(auth, space)
    content_type = request.headers.get("content-type", "")
    csv_bytes: bytes | None = None
    if content_type.lower().startswith("multipart/form-data"):
        fields = parse_multipart(content_type, await request.body())
        raw_csv = fields.pop("csv", None)
        csv_bytes = raw_csv if isinstance(raw_csv, bytes) else None
        for name, value in fields.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and (problem := text_error(item)) is not None:
                    raise dust_error(400, "invalid_request_error", f"Invalid request body: `{name}` {problem}")
        body = validate(CsvBody, _form_to_body(fields))
    else:
        body = validate(CsvBody, await read_object(request))
        csv_bytes = body.csv.encode() if body.csv is not None else None
    if csv_bytes is None:
        raise dust_error(
            400, "invalid_request_error", "Invalid request body: `csv` (or a multipart `file` part) is required."
        )
    try:
        text = csv_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise dust_error(400, "invalid_rows_request_error", "Invalid CSV content: the file is not UTF-8.") from exc
    if (problem := text_error(text)) is not None:
        raise dust_error(400, "invalid_rows_request_error", f"Invalid CSV content: the file {problem}")
    if auth.is_system:
        if not body.mimeType:
            raise dust_error(400, "invalid_request_error", "Invalid request body: mimeType must be provided.")
    elif body.mimeType:
        raise dust_error(400, "invalid_request_error", "Invalid request body: mimeType must not be provided.")
    _no_custom_hierarchy(auth, body.parents, body.parentId)
    req = TableUpsert(
        name=body.name,
        description=body.description,
        title=body.title,
        table_id=body.tableId or None,
        timestamp=body.timestamp,
        tags=tuple(body.tags or ()),
        parents=tuple(body.parents) if body.parents is not None else None,
        parent_id=body.parentId,
        mime_type=body.mimeType,
        source_url=body.sourceUrl,
    )
    table = await call(core.tables.import_csv, ds, req, text, bool(body.truncate), _now_ms())
    return JSONResponse({"table": table_json(table)})


# --- SQL ---------------------------------------------------------------------------------------------------------
async def _readable_data_source(core: Core, auth: Principal, ref: QueryTableRefBody) -> DataSource:
    """A table's data source: of space ``space_id`` if given, else of any space the key reads."""
    _, ds = await checked(core.access.data_source, auth, ref.data_source_id, ref.space_id, anywhere=True)
    return ds


@router.post("/query_tables")
async def query_tables(request: Request, auth: AuthDep, core: CoreDep) -> JSONResponse:
    arrival = time.monotonic()  # the time limit counts from here: waiting for an SQL worker is part of it
    body = validate(QueryTablesBody, await read_object(request))
    if not body.tables:
        raise dust_error(400, "invalid_request_error", "Invalid request body: `tables` must name at least one table.")
    refs = [TableRef(await _readable_data_source(core, auth, ref), ref.table_id) for ref in body.tables]
    job = await call(core.tables.prepare_query, refs, body.query, arrival)
    with table_errors():
        # on the SQL pool's own threads: the query holds none of the server's while it waits or runs
        result = await core.tables.sql_pool.run_async(job)
    return JSONResponse(
        {
            "schema": schema_to_json(result.columns),
            "results": [{"value": v} for v in result.rows],
            "query": body.query,
        }
    )


# `/tables/csv` is registered before `/tables/{tId}`; row ids are free strings and may contain "/".
for _path in paths("/tables/csv"):
    router.add_api_route(_path, upsert_csv, methods=["POST"])
for _path in paths("/tables"):
    router.add_api_route(_path, list_tables, methods=["GET"])
    router.add_api_route(_path, upsert_table, methods=["POST"])
for _path in paths("/tables/{tId}/parents"):
    router.add_api_route(_path, update_table_parents, methods=["POST"])
for _path in paths("/tables/{tId}/rows"):
    router.add_api_route(_path, list_rows, methods=["GET"])
    router.add_api_route(_path, upsert_rows, methods=["POST"])
for _path in paths("/tables/{tId}/rows/{rId:path}"):
    router.add_api_route(_path, get_row, methods=["GET"])
    router.add_api_route(_path, delete_row, methods=["DELETE"])
for _path in paths("/tables/{tId}"):
    router.add_api_route(_path, get_table, methods=["GET"])
    router.add_api_route(_path, delete_table, methods=["DELETE"])
