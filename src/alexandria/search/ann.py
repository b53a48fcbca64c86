"""How wide an HNSW search looks (``ef``), the same rule for both engines' ANN indexes.

A fixed ``ef`` loses recall as an index grows: on the scale benchmark's 100,000 clustered MiniLM-like vectors
(`bench/scale.py`), recall@10 against exact search was 0.943 at ef 128, 0.969 at 192, 0.981 at 256, 0.989 at 384 (200
SciFact queries; 0.6 to 1.4 ms a search), where 10,000 vectors reach 0.99+ at 128. So ``ef`` grows with the square
root of the index's size past a reference size, up to pgvector's limit of 1,000 (and never below ``k``, which usearch
needs to return k results; pgvector's iterative scan does not, and caps ef at 1,000)."""

from __future__ import annotations

import math

REFERENCE_SIZE = 25_000  # up to this many vectors, the configured ef as it is
MAX_EF = 1_000  # pgvector's hnsw.ef_search ceiling


def hnsw_ef(base: int, k: int, size: int) -> int:
    """The ``ef`` of a top-``k`` search over an index of ``size`` vectors, ``base`` being the configured ef."""
    grown = math.ceil(base * math.sqrt(max(size, 1) / REFERENCE_SIZE)) if size > REFERENCE_SIZE else base
    return max(k, min(MAX_EF, grown))
