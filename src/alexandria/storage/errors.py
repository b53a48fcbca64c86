"""Storage-level helpers for the domain error tree (driver errors themselves are mapped in ``storage/database.py``)."""

from __future__ import annotations

from typing import TypeVar

from alexandria.errors import StorageError

T = TypeVar("T")


def missing_row(row: T | None) -> T:
    """``row``, which the statement that produced it guarantees; a storage error if it is missing anyway."""
    if row is None:
        raise StorageError("a row the database must return is missing")
    return row
