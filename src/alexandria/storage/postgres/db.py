"""PostgreSQL connections: a psycopg 3 pool (pgvector types registered on every connection), transactions for
writes, autocommit reads, read-only snapshots, and schema migrations applied once under an advisory lock."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from alexandria.errors import StorageError
from alexandria.storage.database import Dialect, json_path_parts, packaged_migrations

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x616C6578  # pg_advisory_lock key: "alex"


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (values are always bound parameters)."""
    return '"' + name.replace('"', '""') + '"'


def migrations() -> list[tuple[int, str]]:
    """``(version, sql)`` of every packaged migration of this engine, in order."""
    return packaged_migrations("alexandria.storage.postgres.migrations")


def migrate(url: str) -> int:
    """Apply the migrations a database lacks (each in its own transaction, under an advisory lock so that
    processes starting together apply each once); returns the schema version."""
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT "
                    "NOT NULL DEFAULT (extract(epoch from now()) * 1000)::bigint)"
                )
                row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
                current = int(row[0]) if row else 0
                for version, sql in migrations():
                    if version <= current:
                        continue
                    with conn.transaction():
                        conn.execute(sql.encode())  # a script of several statements (simple query protocol)
                        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                    log.info("applied PostgreSQL migration %d", version)
                    current = version
                return current
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    except psycopg.Error as exc:
        raise StorageError(f"cannot migrate the PostgreSQL database: {exc}") from exc


def _json_path(path: tuple[str, ...]) -> str:
    return "'{" + ",".join(json_path_parts(path)) + "}'"


POSTGRES = Dialect(
    name="PostgreSQL",
    for_update=" FOR UPDATE",
    json_agg="jsonb_agg",
    position_fn="strpos",
    _any=lambda column: f"{column} = ANY(?)",
    _seq=list,
    _json_text=lambda column, path: f"({column} #>> {_json_path(path)})",
    _json_number=lambda column, path: (
        f"(CASE WHEN jsonb_typeof({column} #> {_json_path(path)}) = 'number' "
        f"THEN ({column} #>> {_json_path(path)})::numeric END)"
    ),
    _json_flag=lambda column, path: f"coalesce(({column} #>> {_json_path(path)})::boolean, false)",
    _json_has_key=lambda column, key: f"jsonb_exists({column}, {key})",
)


def _configure(conn: psycopg.Connection) -> None:
    register_vector(conn)


class PgEngine:
    """One pool of connections to one database: the :class:`~alexandria.storage.database.Engine` of the scale-out
    store."""

    dialect = POSTGRES

    def __init__(self, url: str, max_size: int = 16) -> None:
        self.url = url
        self.schema_version = migrate(url)
        try:
            self.pool = ConnectionPool(
                url, min_size=1, max_size=max_size, kwargs={"autocommit": True}, configure=_configure, open=True
            )
            self.pool.wait(timeout=30)
        except (psycopg.Error, Exception) as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[psycopg.Connection]:
        """A read-write transaction: committed on success, rolled back on any exception."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection: each statement sees the latest commit."""
        with self.pool.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[psycopg.Connection]:
        """A read-only transaction: several statements see one consistent snapshot."""
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    # --- the facade's hooks (alexandria.storage.database.Engine) --------------------------------------------------
    def translate(self, sql: str) -> str:
        """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled). Shared SQL has no ``?`` operator."""
        return sql.replace("%", "%%").replace("?", "%s")

    def run(self, raw: Any, sql: str, params: tuple[object, ...]) -> Any:
        return raw.execute(sql, params)

    def run_many(self, raw: Any, sql: str, seq: list[tuple[object, ...]]) -> None:
        with raw.cursor() as cur:
            cur.executemany(sql, seq)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    def is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.Error)

    def close(self) -> None:
        self.pool.close()
