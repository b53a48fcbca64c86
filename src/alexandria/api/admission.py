"""Bounded admission of the write requests that embed in the request (Dust sync upserts; Dify segment writes and
status changes).

At most ``write_concurrency`` of them run at once, on threads of their own (a capacity limiter separate from the one
every other request uses, so that searches always find a thread); at most ``write_queue`` more wait for a turn, in
the event loop (no thread held). Any further one is refused at once with 429 and ``Retry-After`` in its dialect's
envelope, rather than queued without bound behind the embedding work.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread
from fastapi import Request

from alexandria.api.dify.errors import dify_error, is_dify_path
from alexandria.api.doors import door_of
from alexandria.api.errors import DialectError
from alexandria.api.openai.errors import openai_error
from alexandria.config import Settings

P = ParamSpec("P")
T = TypeVar("T")

MAX_RETRY_AFTER_S = 60
EWMA_WEIGHT = 0.2  # of the newest duration in the running mean


def overloaded(path: str, retry_after: int) -> DialectError:
    """429 with ``Retry-After`` in the envelope of the dialect that owns ``path``."""
    message = f"The server is busy embedding other documents; retry in {retry_after} s."
    # the client waits before its next request: close the connection rather than leave it idle past keep-alive
    headers = {"Retry-After": str(retry_after), "Connection": "close"}
    if door_of(path) == "openai":
        return openai_error(429, message, type_="rate_limit_error", code="rate_limit_exceeded", headers=headers)
    if is_dify_path(path):
        return dify_error(429, "too_many_requests", message, headers)
    return DialectError(429, {"error": {"type": "rate_limit_error", "message": message}}, headers)


class WriteAdmission:
    def __init__(self, concurrency: int, queue: int) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self.admitted = 0  # running + waiting (only touched in the event loop)
        # running mean of a write's duration (updated from the write threads: a float store, good enough here)
        self.mean_s = 1.0
        self._limiter: anyio.CapacityLimiter | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WriteAdmission:
        return cls(settings.write_concurrency, settings.write_queue)

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # created in the event loop, on first use
            self._limiter = anyio.CapacityLimiter(self.concurrency)
        return self._limiter

    @property
    def running(self) -> int:
        return int(self.limiter.borrowed_tokens)

    def retry_after(self) -> int:
        """Seconds until a turn is likely free: the queue ahead drains ``concurrency`` at a time."""
        rounds = self.admitted / self.concurrency
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(rounds * self.mean_s)))

    def _timed(self, fn: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            return fn()
        finally:
            self.mean_s += EWMA_WEIGHT * (time.monotonic() - started - self.mean_s)

    async def run(self, path: str, fn: Callable[[], T]) -> T:
        if self.admitted >= self.concurrency + self.queue:
            raise overloaded(path, self.retry_after())
        self.admitted += 1
        try:
            return await anyio.to_thread.run_sync(functools.partial(self._timed, fn), limiter=self.limiter)
        finally:
            self.admitted -= 1


def admission(request: Request) -> WriteAdmission:
    found: WriteAdmission = request.app.state.write_admission
    return found


async def run_write(request: Request, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a write that embeds in the request under the app's write admission (429 when it is full)."""
    return await admission(request).run(request.url.path, functools.partial(fn, *args, **kwargs))
