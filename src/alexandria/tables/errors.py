"""Domain errors of tables. Each carries a stable code; the Dust dialect maps them (``api/dust/tables.py``)."""

from __future__ import annotations

from alexandria.errors import AlreadyExists, InvalidRequest, NotFound


class TableNotFound(NotFound):
    code = "table_not_found"


class TableRowNotFound(NotFound):
    code = "table_row_not_found"


class TableNameNotUnique(AlreadyExists):
    code = "table_name_not_unique"


class InvalidRows(InvalidRequest):
    """Rows that cannot be stored: a bad key, a value that is not a primitive or a datetime object."""

    code = "invalid_rows"


class InvalidCsv(InvalidRequest):
    code = "invalid_csv_content"


class QueryFailed(InvalidRequest):
    """A table query refused or failed. Codes: ``too_many_result_rows``, ``query_execution_error``,
    ``query_timeout``."""

    code = "query_execution_error"


def table_not_found(table_id: str) -> TableNotFound:
    return TableNotFound(f"Table `{table_id}` not found.")


def table_name_taken(name: str, owner_table_id: str | None) -> TableNameNotUnique:
    """Table names are unique within a data source (they name the tables in SQL queries)."""
    owner = f" (table_id `{owner_table_id}`)" if owner_table_id is not None else ""
    return TableNameNotUnique(f"A table named `{name}` already exists in this data source{owner}.")
