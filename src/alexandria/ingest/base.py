"""Protocols shared by the ingestion pipeline: tokenizers and embedders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class Tokenizer(Protocol):
    """The embedding model's own tokenizer, used for chunk sizing and token counts."""

    def count(self, text: str) -> int:
        """Number of tokens in ``text`` without special tokens."""
        ...

    def spans(self, text: str) -> list[tuple[int, int, bool]]:
        """Character spans ``(start, end, starts_word)`` of each token of ``text`` (no special tokens).

        ``starts_word`` is False for a token that continues the previous word (e.g. WordPiece ``##`` pieces),
        so that splitters can avoid cutting a word in two.
        """
        ...

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        """``(id, piece)`` per token, without special tokens (Dust's tokenize endpoint)."""
        ...


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def max_tokens(self) -> int:
        """Longest input (in the tokenizer's tokens, special tokens excluded) the model reads."""
        ...

    @property
    def tokenizer(self) -> Tokenizer: ...

    @property
    def scripts(self) -> frozenset[str] | None:
        """The writing systems the model was trained on, as Unicode script names (``LATIN``, ``CJK``, ``ARABIC``
        ...: :func:`alexandria.search.analysis.dominant_script`); ``None``: any (a multilingual or unknown model).
        Hybrid search gives no weight to the vector signal of a query written in a script outside these."""
        ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed ``texts``; returns an ``(len(texts), dim)`` float32 array of unit vectors."""
        ...
