"""The one hash of chunk texts (vectors of unchanged chunks are reused by it)."""

from __future__ import annotations

import blake3


def chunk_hash(text: str) -> str:
    return blake3.blake3(text.encode()).hexdigest()
