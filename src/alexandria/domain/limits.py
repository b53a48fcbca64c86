"""Numeric ranges every store can hold, decided once: integers are signed 64-bit (SQLite's INTEGER and PostgreSQL's
BIGINT), so timestamps (epoch milliseconds), counts, limits and offsets that reach a store must lie in that range."""

from __future__ import annotations

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_TIMESTAMP_MS = INT64_MAX
"""The largest timestamp a document, folder or table may carry (epoch milliseconds)."""


def in_int64(value: int) -> bool:
    return INT64_MIN <= value <= INT64_MAX
