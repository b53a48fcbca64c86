"""Tables (Dust's structured data): plain dataclasses, no HTTP, no SQL.

A row value is JSON-shaped: ``None``, ``bool``, ``int``, ``float``, ``str`` or a datetime object
``{"type": "datetime", "epoch": <ms>, "string_value"?: <str>}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Cell = None | bool | int | float | str | dict[str, Any]
RowValue = dict[str, Cell]
ValueType = Literal["int", "float", "text", "bool", "datetime"]

DEFAULT_TABLE_MIME_TYPE = "application/vnd.dust.table"


@dataclass(frozen=True)
class TableColumn:
    """One column of a table schema (Dust's ``TableSchemaColumn``); ``possible_values`` is ``None`` once given up."""

    name: str
    value_type: ValueType
    possible_values: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TableRow:
    row_id: str
    value: RowValue


@dataclass(frozen=True)
class Table:
    pk: int
    data_source_id: int
    table_id: str
    name: str
    title: str
    description: str
    mime_type: str
    timestamp: int
    tags: tuple[str, ...]
    parents: tuple[str, ...]
    parent_id: str | None
    source_url: str | None
    remote_database_table_id: str | None
    remote_database_secret_id: str | None
    schema: tuple[TableColumn, ...] | None  # None until rows were upserted once
    schema_stale: bool  # rows changed in a way that needs the schema recomputed from all rows
    rows_version: int  # bumped by every change of the rows
    created: int
    updated: int


@dataclass(frozen=True)
class TableWrite:
    """Table metadata to create or update (rows and schema are untouched by a metadata upsert)."""

    table_id: str
    name: str
    title: str
    description: str
    mime_type: str
    timestamp: int
    tags: tuple[str, ...]
    parents: tuple[str, ...]
    parent_id: str | None
    source_url: str | None = None
    remote_database_table_id: str | None = None
    remote_database_secret_id: str | None = None


@dataclass(frozen=True)
class QueryTable:
    """A table exposed to an SQL query under ``name``."""

    table: Table
    name: str


@dataclass(frozen=True)
class QueryLimits:
    """The limits of one SQL query over tables. ``deadline`` (``time.monotonic()`` seconds) is when its time limit
    ends, counted from the request's arrival (so time spent queueing for a worker counts); None: ``timeout_ms``
    from when the engine starts it."""

    timeout_ms: int
    max_rows: int
    max_result_bytes: int = 64 * 1024 * 1024
    cached_databases: int = 8
    deadline: float | None = None

    def started(self) -> QueryLimits:
        """These limits with a deadline (``timeout_ms`` from now unless one is set)."""
        if self.deadline is not None:
            return self
        return replace(self, deadline=time.monotonic() + self.timeout_ms / 1000)

    def time_left(self) -> float:
        """Seconds until the deadline (negative once past); a started query's limits only."""
        assert self.deadline is not None, "time_left() of limits that were not started"
        return self.deadline - time.monotonic()


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[TableColumn, ...]
    rows: list[RowValue] = field(default_factory=list)
