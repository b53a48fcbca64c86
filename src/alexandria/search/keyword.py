"""BM25's constants and score bound, the same for every engine: the most any chunk can score for a query's terms
(what Dify's keyword scores are divided by to land in [0, 1]). Which terms a text or a query has is the analyzer's
(``search/analysis.py``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

BM25_K1 = 1.2  # the usual defaults (Lucene's, tantivy's, FTS5's)
BM25_B = 0.75


def bm25_idf(total: int, doc_freq: int) -> float:
    """BM25's IDF as Lucene and tantivy compute it: ln(1 + (N - n + 0.5) / (n + 0.5)), positive for every term."""
    return math.log(1.0 + (total - doc_freq + 0.5) / (doc_freq + 0.5))


def bm25_bound(total: int, doc_freqs: Sequence[int]) -> float:
    """The most BM25 any chunk can score for terms of these document frequencies among ``total`` chunks: each
    term's IDF times (k1 + 1), the limit of its term-frequency factor. A term no chunk holds adds nothing to any
    chunk's score, so nothing to the bound (a query's misspelt word, or the stem of a language the data source is
    not written in: ``search/analysis.py``)."""
    return sum(bm25_idf(total, n) * (BM25_K1 + 1) for n in doc_freqs if n > 0)
