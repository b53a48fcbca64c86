"""Validation of rows sent by clients (Dust's ``UpsertTableRowsRequestSchema`` plus core's checks).

A row is ``{"row_id": <string>, "value": {<key>: <cell>}}``; keys match ``^[a-z0-9_]+$``; a cell is ``null``, a
boolean, a finite number, a string or ``{"type": "datetime", "epoch": <integer ms>, "string_value"?: <string>}``.
Rows are normalised on the way in: unknown keys of datetime objects are dropped, integers beyond i64 become floats.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from alexandria.domain.tables import Cell, RowValue, TableRow
from alexandria.errors import InvalidRequest
from alexandria.tables.errors import InvalidRows
from alexandria.tables.schema import I64_MAX, I64_MIN, is_datetime_object

KEY = re.compile(r"^[a-z0-9_]+$")
KEYS_MESSAGE = "Invalid request body: keys must be lowercase alphanumeric."


def datetime_cell(epoch: int, string_value: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "datetime", "epoch": epoch}
    if string_value is not None:
        out["string_value"] = string_value
    return out


def clean_cell(value: Any, key: str, row_index: int) -> Cell:
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value  # type: ignore[no-any-return]
    if kind is int:
        if I64_MIN <= value <= I64_MAX:
            return value  # type: ignore[no-any-return]
        as_float = float(value) if abs(value) < 2**1023 else math.inf
        if math.isinf(as_float):
            raise InvalidRows(f"Field {key} on row {row_index} is a number too large to store.")
        return as_float
    if kind is float:
        if not math.isfinite(value):
            raise InvalidRows(f"Field {key} on row {row_index} is not a finite number.")
        return value  # type: ignore[no-any-return]
    if isinstance(value, dict):
        string_value = value.get("string_value")
        if is_datetime_object(value) and (string_value is None or isinstance(string_value, str)):
            if "string_value" in value and string_value is None:
                raise InvalidRows(f"Field {key} on row {row_index}: `string_value` must be a string.")
            return datetime_cell(int(value["epoch"]), string_value)
        raise InvalidRows(
            f"Field {key} is not a primitive or datetime object type on row {row_index} (non datetime object "
            "and arrays are not supported; a datetime is {type: 'datetime', epoch: <integer milliseconds>})."
        )
    raise InvalidRows(
        f"Field {key} is not a primitive type on row {row_index} (non datetime object and arrays are not supported)."
    )


def clean_value(value: Mapping[str, Any], row_index: int) -> RowValue:
    out: RowValue = {}
    for key, cell in value.items():
        if not isinstance(key, str) or KEY.match(key) is None:
            raise InvalidRows(KEYS_MESSAGE)
        out[key] = clean_cell(cell, key, row_index)
    return out


def parse_rows(raw: Any) -> list[TableRow]:
    """Rows from a request body's ``rows`` (``InvalidRequest`` for a wrong shape, ``InvalidRows`` for bad keys or
    values)."""
    if not isinstance(raw, list):
        raise InvalidRequest('Invalid request body: Validation error: Expected array at "rows"')
    rows: list[TableRow] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidRequest(f'Invalid request body: Validation error: Expected object at "rows[{i}]"')
        row_id = item.get("row_id")
        if not isinstance(row_id, str):
            raise InvalidRequest(f'Invalid request body: Validation error: Expected string at "rows[{i}].row_id"')
        value = item.get("value")
        if not isinstance(value, dict):
            raise InvalidRequest(f'Invalid request body: Validation error: Expected object at "rows[{i}].value"')
        rows.append(TableRow(row_id, clean_value(value, i)))
    return rows


def dedupe_rows(rows: list[TableRow]) -> list[TableRow]:
    """One row per ``row_id``: the last value wins, at the position of the first occurrence (as an upsert of the
    rows one after the other would leave them)."""
    by_id: dict[str, RowValue] = {}
    for row in rows:
        by_id[row.row_id] = row.value
    if len(by_id) == len(rows):
        return rows
    return [TableRow(row_id, value) for row_id, value in by_id.items()]
