"""Tables: metadata upserts, rows (upsert with ``truncate``, list, get, delete), CSV import and read-only SQL."""

from __future__ import annotations

import functools
import secrets
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass

from alexandria.config import Settings
from alexandria.domain.models import DataSource
from alexandria.domain.tables import (
    DEFAULT_TABLE_MIME_TYPE,
    QueryLimits,
    QueryResult,
    QueryTable,
    Table,
    TableRow,
    TableWrite,
)
from alexandria.errors import InvalidRequest
from alexandria.services.documents import normalize_timestamp
from alexandria.services.sql_pool import PoolLimits, SqlJob, SqlPool
from alexandria.storage.base import TableStore
from alexandria.tables.csv import parse_csv
from alexandria.tables.errors import TableRowNotFound, table_not_found

UNTITLED_TITLE = "Untitled Document"
_ALPHABET = string.ascii_letters + string.digits


def new_table_id() -> str:
    """A random id, shaped like Dust's ``generateRandomModelSId()`` (10 alphanumerics)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(10))


def resolve_table_title(title: str | None, tags: Sequence[str], name: str) -> str:
    """Dust's rule: ``title.trim()`` || the first ``title:`` tag || ``name.trim()`` || "Untitled Document"."""
    tag_title = next((t[len("title:") :].strip() for t in tags if t.startswith("title:")), "")
    return (title or "").strip() or tag_title or name.strip() or UNTITLED_TITLE


def check_table_parents(table_id: str, parents: Sequence[str], parent_id: str | None) -> None:
    if len(parents) < 1:
        raise InvalidRequest("Invalid parents: parents must have at least one element.")
    if parents[0] != table_id:
        raise InvalidRequest("Invalid parents: parents[0] should be equal to table_id.")
    if (len(parents) >= 2 or parent_id is not None) and (len(parents) < 2 or parents[1] != parent_id):
        raise InvalidRequest("Invalid parent id: parents[1] and parent_id should be equal.")


@dataclass(frozen=True)
class TableUpsert:
    name: str
    description: str
    title: str | None = None
    table_id: str | None = None
    timestamp: float | None = None
    tags: tuple[str, ...] = ()
    parents: tuple[str, ...] | None = None
    parent_id: str | None = None
    mime_type: str | None = None
    source_url: str | None = None
    remote_database_table_id: str | None = None
    remote_database_secret_id: str | None = None


@dataclass(frozen=True)
class TableRef:
    """A table named by a query request."""

    ds: DataSource
    table_id: str


def unique_names(tables: Sequence[tuple[DataSource, Table]]) -> list[QueryTable]:
    """Dust's ``get_transient_database_unique_table_names``: in (data source, table id) order, a name already taken
    (SQLite names ignore case) gets ``_1``, ``_2``… appended."""
    ordered = sorted(tables, key=lambda dt: (dt[0].core_id, dt[1].table_id))
    used: set[str] = set()
    counts: dict[str, int] = {}
    out: list[QueryTable] = []
    for _, table in ordered:
        base = table.name
        n = counts.get(base.lower(), 0)
        name = base if n == 0 else f"{base}_{n}"
        while name.lower() in used:
            n += 1
            name = f"{base}_{n}"
        counts[base.lower()] = n + 1
        used.add(name.lower())
        out.append(QueryTable(table, name))
    return out


class TableService:
    def __init__(self, store: TableStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.sql_pool = SqlPool(
            PoolLimits(
                workers=settings.sql_workers,
                per_workspace=settings.sql_workers_per_workspace,
                queue=settings.sql_queue,
                queue_per_workspace=settings.sql_queue_per_workspace,
                nice=settings.sql_nice,
            )
        )

    # --- tables --------------------------------------------------------------------------------------------------
    def prepare(self, req: TableUpsert, now_ms: int) -> TableWrite:
        table_id = req.table_id or new_table_id()
        if req.parents is not None:
            check_table_parents(table_id, req.parents, req.parent_id)
        return TableWrite(
            table_id=table_id,
            name=req.name,
            title=resolve_table_title(req.title, req.tags, req.name),
            description=req.description,
            mime_type=req.mime_type or DEFAULT_TABLE_MIME_TYPE,
            timestamp=normalize_timestamp(req.timestamp, now_ms),
            tags=tuple(req.tags),
            parents=tuple(req.parents) if req.parents is not None else (table_id,),
            parent_id=req.parent_id,
            source_url=req.source_url,
            remote_database_table_id=req.remote_database_table_id,
            remote_database_secret_id=req.remote_database_secret_id,
        )

    def upsert(self, ds: DataSource, req: TableUpsert, now_ms: int) -> Table:
        return self.fresh(ds, self.store.upsert_table(ds, self.prepare(req, now_ms)))

    def fresh(self, ds: DataSource, table: Table) -> Table:
        """``table`` with an exact schema (recomputed if rows were replaced or deleted since)."""
        return self.store.refresh_table_schema(ds, table.table_id) if table.schema_stale else table

    def get(self, ds: DataSource, table_id: str) -> Table | None:
        table = self.store.get_table(ds, table_id)
        return self.fresh(ds, table) if table is not None else None

    def require(self, ds: DataSource, table_id: str) -> Table:
        table = self.get(ds, table_id)
        if table is None:
            raise table_not_found(table_id)
        return table

    def list_all(self, ds: DataSource) -> list[Table]:
        return [self.fresh(ds, t) for t in self.store.list_tables(ds)]

    def delete(self, ds: DataSource, table_id: str) -> bool:
        return self.store.delete_table(ds, table_id)

    def update_parents(self, ds: DataSource, table_id: str, parents: Sequence[str], parent_id: str | None) -> None:
        check_table_parents(table_id, parents, parent_id)
        if not self.store.update_table_parents(ds, table_id, parents, parent_id):
            raise table_not_found(table_id)

    # --- rows ----------------------------------------------------------------------------------------------------
    def upsert_rows(self, ds: DataSource, table_id: str, rows: Sequence[TableRow], truncate: bool) -> Table:
        return self.fresh(ds, self.store.upsert_table_rows(ds, table_id, rows, truncate))

    def list_rows(self, ds: DataSource, table_id: str, limit: int, offset: int) -> tuple[list[TableRow], int]:
        if limit < 0 or offset < 0:
            raise InvalidRequest("limit and offset must be non-negative integers.")
        return self.store.list_table_rows(ds, table_id, limit, offset)

    def get_row(self, ds: DataSource, table_id: str, row_id: str) -> TableRow:
        row = self.store.get_table_row(ds, table_id, row_id)
        if row is None:
            raise TableRowNotFound(f"No row found for id `{row_id}` in table `{table_id}`.")
        return row

    def delete_row(self, ds: DataSource, table_id: str, row_id: str) -> bool:
        return self.store.delete_table_row(ds, table_id, row_id)

    def import_csv(self, ds: DataSource, req: TableUpsert, content: str, truncate: bool, now_ms: int) -> Table:
        """Parse ``content`` (nothing is written if it is invalid), upsert the table, then its rows."""
        rows = parse_csv(content)
        write = self.prepare(req, now_ms)
        self.store.upsert_table(ds, write)
        return self.upsert_rows(ds, write.table_id, rows, truncate)

    # --- SQL -----------------------------------------------------------------------------------------------------
    def prepare_query(self, refs: Sequence[TableRef], query: str, arrival: float | None = None) -> SqlJob:
        """The job of one query (its tables found now: unknown ones fail here), for the SQL pool. Its time limit
        counts from ``arrival`` (``time.monotonic()``; default: now)."""
        if not refs:
            raise InvalidRequest("Invalid request body: at least one table is required.")
        seen: dict[tuple[int, str], tuple[DataSource, Table]] = {}
        for ref in refs:
            key = (ref.ds.id, ref.table_id)
            if key not in seen:
                seen[key] = (ref.ds, self.require(ref.ds, ref.table_id))
        timeout_ms = self.settings.sql_timeout_ms
        deadline = (time.monotonic() if arrival is None else arrival) + timeout_ms / 1000
        limits = QueryLimits(
            timeout_ms=timeout_ms,
            max_rows=self.settings.sql_max_rows,
            cached_databases=self.settings.sql_cached_databases,
            deadline=deadline,
        )
        tables = unique_names(list(seen.values()))
        return SqlJob(
            workspace=refs[0].ds.workspace_id,
            run=functools.partial(self.store.query_tables, tables, query, limits),
            deadline=deadline,
            timeout_ms=timeout_ms,
        )

    def query(self, refs: Sequence[TableRef], query: str) -> QueryResult:
        """Run one query through the SQL pool, waiting on this thread (async callers: ``prepare_query`` then
        ``sql_pool.run_async``)."""
        return self.sql_pool.run(self.prepare_query(refs, query))

    def close(self) -> None:
        self.sql_pool.close()
