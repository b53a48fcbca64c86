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

    # --- the refusals both SQL engines give, worded once (Dust's messages) ---------------------------------------
    @classmethod
    def execution(cls, message: str) -> QueryFailed:
        return cls(message, code="query_execution_error")

    @classmethod
    def error(cls, detail: object) -> QueryFailed:
        return cls.execution(f"Query execution error: {detail}")

    @classmethod
    def not_single_statement(cls) -> QueryFailed:
        return cls.execution("Query must contain a single statement.")

    @classmethod
    def not_a_select(cls) -> QueryFailed:
        return cls.execution("Query must contain a single read-only SELECT statement.")

    @classmethod
    def not_loadable(cls, detail: str) -> QueryFailed:
        return cls.execution(f"Cannot load the tables: {detail}")

    @classmethod
    def too_many_rows(cls, max_rows: int) -> QueryFailed:
        return cls(
            f"The query returned more than {max_rows} rows. Aggregate the data or add a LIMIT.",
            code="too_many_result_rows",
        )

    @classmethod
    def too_large(cls, max_bytes: int) -> QueryFailed:
        return cls.execution(f"The query result is larger than {max_bytes} bytes.")

    @classmethod
    def timed_out(cls, timeout_ms: int) -> QueryFailed:
        return cls(f"Query execution timed out after {timeout_ms} ms.", code="query_timeout")

    @classmethod
    def blob_not_utf8(cls, column: str) -> QueryFailed:
        return cls.execution(f"Column `{column}` holds a BLOB that is not valid UTF-8.")

    @classmethod
    def not_read_only(cls, what: str) -> QueryFailed:
        return cls.execution(f"Query must be read-only and use only the given tables: {what} is not allowed.")


def table_not_found(table_id: str) -> TableNotFound:
    return TableNotFound(f"Table `{table_id}` not found.")


def table_name_taken(name: str, owner_table_id: str | None) -> TableNameNotUnique:
    """Table names are unique within a data source (they name the tables in SQL queries)."""
    owner = f" (table_id `{owner_table_id}`)" if owner_table_id is not None else ""
    return TableNameNotUnique(f"A table named `{name}` already exists in this data source{owner}.")
