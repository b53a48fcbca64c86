"""Errors raised by dialect modules, already carrying their dialect's status and envelope."""

from __future__ import annotations

from typing import Any


class DialectError(Exception):
    """An HTTP error in a dialect's own envelope."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body
        self.headers = headers or {}
