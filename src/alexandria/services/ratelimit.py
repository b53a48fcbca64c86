"""Dust's upsert rate limit: N upserts per sliding 60 s window per workspace; system keys are exempt.

The window is kept in this process (Dust keeps it in Redis). With several API processes each enforces the limit
on the requests it serves.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable

from alexandria.domain.models import Principal
from alexandria.errors import RateLimited

WINDOW_S = 60.0


class RateLimits:
    def __init__(self, upserts_per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = upserts_per_minute
        self.clock = clock
        self._hits: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def check_upsert(self, who: Principal, bucket: str = "upsert-document") -> None:
        """Count one upsert by ``who``; raises :class:`RateLimited` past the limit (0 disables it)."""
        if who.is_system or self.limit <= 0:
            return
        now = self.clock()
        key = f"{bucket}-w-{who.workspace.sid}"
        with self._lock:
            hits = self._hits.setdefault(key, collections.deque())
            while hits and hits[0] <= now - WINDOW_S:
                hits.popleft()
            if len(hits) >= self.limit:
                raise RateLimited(
                    f"You have reached the maximum number of {self.limit} upserts per minute.",
                    retry_after=math.ceil(hits[0] + WINDOW_S - now),
                )
            hits.append(now)
