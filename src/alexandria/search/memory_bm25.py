"""BM25 over texts held in memory, under any analyzer: what ``alexandria eval --analyzer`` ranks with, so analyzers
the engines do not run can be compared with the one they do.

The scoring is the engines' (``search/keyword.py``: k1, b and Lucene's idf; a text's length is its number of terms,
the average over the texts indexed; a query's terms OR-ed), except that lengths are exact where tantivy rounds
those above 40 terms to one of 256 steps. Postings are kept as one array per column (compressed sparse rows by term),
so a query costs a few vector operations per term however many texts hold it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from alexandria.search.keyword import BM25_B, BM25_K1, bm25_idf


class MemoryBM25:
    """The BM25 index of ``texts`` (numbered from 0 in their order) under ``analyze`` (a text's terms, repeats
    included)."""

    def __init__(self, texts: Sequence[str], analyze: Callable[[str], list[str]]) -> None:
        vocabulary: dict[str, int] = {}
        rows: list[npt.NDArray[np.int64]] = []
        term_ids: list[npt.NDArray[np.int64]] = []
        counts: list[npt.NDArray[np.int64]] = []
        lengths = np.zeros(len(texts), dtype=np.float64)
        for row, text in enumerate(texts):
            terms = analyze(text)
            lengths[row] = len(terms)
            ids, tf = np.unique(
                np.fromiter((vocabulary.setdefault(t, len(vocabulary)) for t in terms), dtype=np.int64),
                return_counts=True,
            )
            rows.append(np.full(len(ids), row, dtype=np.int64))
            term_ids.append(ids)
            counts.append(tf)
        self.vocabulary = vocabulary
        self.size = len(texts)
        every_term = np.concatenate(term_ids) if term_ids else np.zeros(0, dtype=np.int64)
        order = np.argsort(every_term, kind="stable")
        self.rows = (np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64))[order]
        tf_all = (np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64))[order].astype(np.float64)
        average = float(lengths.mean()) if self.size and lengths.sum() > 0 else 1.0
        norm = BM25_K1 * (1.0 - BM25_B + BM25_B * lengths[self.rows] / average)
        self.weights = tf_all * (BM25_K1 + 1.0) / (tf_all + norm)  # each posting's term-frequency factor
        self.starts = np.searchsorted(every_term[order], np.arange(len(vocabulary) + 1))

    def doc_freq(self, term: str) -> int:
        """How many texts hold ``term``."""
        i = self.vocabulary.get(term)
        return 0 if i is None else int(self.starts[i + 1] - self.starts[i])

    def scores(self, terms: Sequence[str]) -> npt.NDArray[np.float64]:
        """Every text's BM25 for the (distinct) query terms."""
        out = np.zeros(self.size, dtype=np.float64)
        for term in dict.fromkeys(terms):
            i = self.vocabulary.get(term)
            if i is None:
                continue
            start, end = int(self.starts[i]), int(self.starts[i + 1])
            out[self.rows[start:end]] += bm25_idf(self.size, end - start) * self.weights[start:end]
        return out

    def top(self, terms: Sequence[str], k: int) -> list[tuple[int, float]]:
        """The ``k`` best-scoring texts holding any of the terms, ``(number, score)`` best first (ties: lower
        number first)."""
        scores = self.scores(terms)
        matched = np.flatnonzero(scores > 0)
        if len(matched) > k:
            matched = matched[np.argpartition(-scores[matched], k - 1)[:k]]
        ranked = sorted(matched.tolist(), key=lambda row: (-scores[row], row))
        return [(row, float(scores[row])) for row in ranked]
