"""The one database facade both engines share: connections, transactions and driver errors, over a small dialect.

Row storage (catalog, spaces, keys, documents' rows, Dify records, tables' rows, the queue's bookkeeping) is written
once against :class:`Database` and :class:`Conn`. SQL is written with ``?`` placeholders and in the dialect both
engines accept (``RETURNING``, ``ON CONFLICT``, ``TRUE``/``FALSE``, ``count(*) FILTER (WHERE ...)``); the few real
differences (lists bound as one parameter, JSON access, row locks, string search) come from :class:`Dialect`.

Driver errors are mapped to the domain error tree here and nowhere else: a unique-key violation becomes
:class:`DuplicateKey` (the service that knows what was duplicated words the message), anything else
:class:`~alexandria.errors.StorageError`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from alexandria.errors import AlreadyExists, StorageError

Row = tuple[Any, ...]


class DuplicateKey(AlreadyExists):
    """A write collided with a unique key (the driver's integrity error, mapped once)."""

    code = "duplicate_key"


@dataclass(frozen=True)
class Dialect:
    """The SQL that differs between the engines. Every method returns SQL text; values stay bound parameters."""

    name: str
    #: appended to a SELECT that must lock its rows until the transaction ends (SQLite's one writer needs nothing)
    for_update: str
    #: a JSON array aggregate (``json_group_array`` / ``jsonb_agg``)
    json_agg: str
    #: ``f(haystack, needle) > 0`` finds a substring (``instr`` / ``strpos``)
    position_fn: str
    _any: Callable[[str], str]
    _seq: Callable[[Sequence[Any]], object]
    _json_text: Callable[[str, tuple[str, ...]], str]
    _json_number: Callable[[str, tuple[str, ...]], str]
    _json_flag: Callable[[str, tuple[str, ...]], str]
    _json_has_key: Callable[[str, str], str]

    def any_of(self, column: str) -> str:
        """``column`` equals one of a list bound as one parameter (see :meth:`seq`)."""
        return self._any(column)

    def seq(self, values: Iterable[Any]) -> object:
        """A list of values as the one parameter :meth:`any_of` binds."""
        return self._seq(list(values))

    def json_text(self, column: str, *path: str) -> str:
        """The text at ``path`` inside a JSON column (NULL where missing)."""
        return self._json_text(column, path)

    def json_number(self, column: str, *path: str) -> str:
        """The number at ``path`` inside a JSON column (NULL where missing or not a number)."""
        return self._json_number(column, path)

    def json_flag(self, column: str, *path: str) -> str:
        """A condition: the value at ``path`` inside a JSON column is true (false where missing)."""
        return self._json_flag(column, path)

    def json_has_key(self, column: str, key: str) -> str:
        """A condition: the JSON object in ``column`` has the key that the SQL expression ``key`` (a column, or
        ``?`` for a bound value) names, whatever its value (null included)."""
        return self._json_has_key(column, key)


def packaged_migrations(package: str) -> list[tuple[int, str]]:
    """``(version, sql)`` of every migration file (``NNNN_name.sql``) packaged in ``package``, in order."""
    found: list[tuple[int, str]] = []
    for entry in resources.files(package).iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def json_path_parts(path: tuple[str, ...]) -> tuple[str, ...]:
    """``path`` checked for the dialects' JSON accessors, which write its parts into SQL text: identifiers only."""
    if not all(p.isidentifier() for p in path):
        raise ValueError(f"JSON path parts must be identifiers: {path!r}")
    return path


class Engine(Protocol):
    """What an engine's connection manager gives the facade (``storage/sqlite/db.py``, ``storage/postgres/db.py``).
    Its scopes yield the driver's connection; engine-specific code (index primitives, search, the SQL sandbox) uses
    them directly, row storage goes through :class:`Database`."""

    @property
    def dialect(self) -> Dialect: ...
    @property
    def schema_version(self) -> int: ...
    def read(self) -> contextlib.AbstractContextManager[Any]: ...
    def write(self) -> contextlib.AbstractContextManager[Any]: ...
    def snapshot(self) -> contextlib.AbstractContextManager[Any]: ...
    def close(self) -> None: ...
    def translate(self, sql: str) -> str:
        """``sql`` written with ``?`` placeholders, in the engine's own placeholder style."""
        ...

    def run(self, raw: Any, sql: str, params: tuple[object, ...]) -> Any: ...
    def run_many(self, raw: Any, sql: str, seq: list[tuple[object, ...]]) -> None: ...
    def is_unique_violation(self, exc: BaseException) -> bool: ...
    def is_driver_error(self, exc: BaseException) -> bool: ...


class Conn:
    """A connection inside one of :class:`Database`'s scopes. ``raw`` is the driver's connection, for the
    engine-specific primitives a shared writer calls inside its transaction."""

    def __init__(self, raw: Any, db: Database) -> None:
        self.raw = raw
        self.db = db
        self.dialect = db.dialect

    def execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        """Run one statement; returns the driver's cursor (``fetchone``, ``fetchall``, iteration, ``rowcount``)."""
        with self.db.mapped_errors():
            return self.db.engine.run(self.raw, self.db.translate(sql), tuple(params))

    def executemany(self, sql: str, seq: Iterable[Sequence[object]]) -> None:
        items = [tuple(p) for p in seq]
        if items:
            with self.db.mapped_errors():
                self.db.engine.run_many(self.raw, self.db.translate(sql), items)

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        row = self.execute(sql, params).fetchone()
        return None if row is None else tuple(row)

    def all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        return [tuple(r) for r in self.execute(sql, params).fetchall()]

    def scalar(self, sql: str, params: Sequence[object] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def returning_id(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run an ``INSERT ... RETURNING id`` that must insert; its id."""
        row = self.one(sql, params)
        if row is None:
            raise StorageError("an inserted row returned no id")
        return int(row[0])


class Database:
    """One database, whatever the engine: ``read()`` (each statement sees the latest commit), ``write()`` (one
    transaction, committed on success, rolled back on any exception; nested use joins it) and ``snapshot()``
    (several reads of one consistent state)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._translated: dict[str, str] = {}

    @property
    def schema_version(self) -> int:
        return self.engine.schema_version

    def translate(self, sql: str) -> str:
        found = self._translated.get(sql)
        if found is None:
            found = self._translated[sql] = self.engine.translate(sql)
        return found

    @contextlib.contextmanager
    def read(self) -> Iterator[Conn]:
        with self.mapped_errors(), self.engine.read() as raw:
            yield Conn(raw, self)

    @contextlib.contextmanager
    def write(self) -> Iterator[Conn]:
        with self.mapped_errors(), self.engine.write() as raw:
            yield Conn(raw, self)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Conn]:
        with self.mapped_errors(), self.engine.snapshot() as raw:
            yield Conn(raw, self)

    def close(self) -> None:
        self.engine.close()

    @contextlib.contextmanager
    def mapped_errors(self) -> Iterator[None]:
        """Driver errors raised inside become domain errors (the one place this mapping lives)."""
        try:
            yield
        except DuplicateKey:
            raise
        except Exception as exc:
            if self.engine.is_unique_violation(exc):
                raise DuplicateKey(f"duplicate key: {exc}") from exc
            if self.engine.is_driver_error(exc):
                raise StorageError(f"{self.dialect.name} error: {exc}") from exc
            raise
