"""The scale-out store's SQL over tables (``query_tables``, the sandbox in ``storage/postgres/sql.py``) and its
faster primitives for writing many rows (COPY, one ``UPDATE ... FROM unnest``); tables and rows themselves are
``storage/common/tables.py``."""

from __future__ import annotations

from collections.abc import Sequence

from alexandria.storage.common.tables import TableRows
from alexandria.storage.database import Conn
from alexandria.storage.postgres.db import PgEngine
from alexandria.storage.postgres.sql import PgQueryEngine


class PgTables(TableRows):
    """Tables half of :class:`PostgresStore`."""

    engine: PgEngine

    # --- rows: the engine's bulk primitives ----------------------------------------------------------------------
    def _append_rows(self, conn: Conn, table_pk: int, encoded: Sequence[tuple[str, str]]) -> None:
        if not encoded:
            return
        with conn.raw.cursor().copy("COPY table_rows (table_pk, row_id, value) FROM STDIN") as copy:
            for row_id, value in encoded:
                copy.write_row((table_pk, row_id, value))

    def _replace_rows(self, conn: Conn, table_pk: int, encoded: Sequence[tuple[str, str]]) -> None:
        if not encoded:
            return
        conn.raw.cursor().execute(
            "UPDATE table_rows SET value = u.value::json FROM unnest(%s::text[], %s::text[]) AS u(row_id, value) "
            "WHERE table_rows.table_pk = %s AND table_rows.row_id = u.row_id",
            ([r for r, _ in encoded], [v for _, v in encoded], table_pk),
            binary=True,  # no text escaping of the arrays
        )

    # --- SQL -----------------------------------------------------------------------------------------------------
    def _new_sandbox(self) -> PgQueryEngine:
        return PgQueryEngine(self.engine.url)

    def close(self) -> None:
        """Close the SQL engine's connections, then the rest of the store (the next mixin's ``close``)."""
        self.close_sql_engine()
        parent = getattr(super(), "close", None)
        if parent is not None:
            parent()
