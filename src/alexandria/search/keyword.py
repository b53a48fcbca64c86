"""Keyword query analysis and BM25's score bound, the same for every engine: which words of a query are searched,
and the most any chunk can score for them (what Dify's keyword scores are divided by to land in [0, 1])."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 64
# English function words dropped from keyword queries (as Lucene's English analyzer does), unless nothing else is
# left: in an OR query they match almost every chunk and only add noise to BM25 and to hybrid fusion.
STOPWORDS = frozenset(
    "a an and are as at be but by do does did for from had has have how i if in into is it its of on or so such "
    "that the their then there these they this to was were what when where which while who whom why will with "
    "would you your".split()
)


def query_terms(query: str) -> list[str]:
    """The query's distinct words, English function words dropped (unless nothing else is left)."""
    words: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in words:
            words.append(word)
    terms = [w for w in words if w not in STOPWORDS] or words
    return terms[:MAX_QUERY_TERMS]


BM25_K1 = 1.2  # FTS5's bm25() defaults
BM25_B = 0.75


def bm25_bound(total: int, doc_freqs: Sequence[int]) -> float:
    """The most BM25 (as FTS5 computes it) any chunk can score for terms of these document frequencies among
    ``total`` chunks: each term's IDF times (k1 + 1), the limit of its term-frequency factor."""
    bound = 0.0
    for n in doc_freqs:
        idf = math.log((total - n + 0.5) / (n + 0.5))
        bound += max(idf, 1e-6) * (BM25_K1 + 1)
    return bound
