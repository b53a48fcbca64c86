"""Test doubles: a whitespace tokenizer and a hashing bag-of-words embedder (for tests where vector quality does
not matter; every capability also has an end-to-end test on the real model)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from alexandria.ingest.base import Tokenizer, Vectors

_WORD = re.compile(r"\S+")


class WhitespaceTokenizer:
    def count(self, text: str) -> int:
        return len(_WORD.findall(text))

    def spans(self, text: str) -> list[tuple[int, int, bool]]:
        return [(m.start(), m.end(), True) for m in _WORD.finditer(text)]

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        return [(int(hashlib.md5(w.encode()).hexdigest()[:6], 16), w) for w in _WORD.findall(text)]


class HashingEmbedder:
    """Each lower-cased word hashes to a dimension; vectors are normalised word counts."""

    def __init__(self, dim: int = 64, max_tokens: int = 32) -> None:
        self._dim = dim
        self._max_tokens = max_tokens
        self._tokenizer = WhitespaceTokenizer()
        self.calls: list[int] = []

    @property
    def name(self) -> str:
        return "fake"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def scripts(self) -> frozenset[str] | None:
        return None

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self._dim] += 1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm > 0 else out[i]
            if norm == 0:
                out[i, 0] = 1.0
        return out
