"""Keyword query analysis and BM25's score bound, the same for every engine: which words of a query are searched,
and the most any chunk can score for them (what Dify's keyword scores are divided by to land in [0, 1])."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import snowballstemmer

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


# --- the analysis both engines index and query with (until ``search/analysis.py`` replaces it) ----------------------
# Two call sites only: :func:`document_terms` (what a chunk is indexed as) and :func:`query_stems` (what a query
# searches for). A word is lowercased, stripped of diacritics and stemmed with Snowball's English stemmer.

_STEMMER = snowballstemmer.stemmer("english")


@lru_cache(maxsize=1 << 20)
def _term(word: str) -> str:
    if not word.isascii():
        word = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    return str(_STEMMER.stemWord(word))


def document_terms(text: str) -> list[str]:
    """The terms a chunk's text is indexed as, in order (every word: BM25 counts them all in a chunk's length)."""
    return [_term(w) for w in _WORD.findall(text.lower())]


def query_stems(query: str) -> list[str]:
    """The distinct terms a keyword query searches for: :func:`query_terms`, analysed as :func:`document_terms`."""
    stems: list[str] = []
    for word in query_terms(query):
        term = _term(word)
        if term and term not in stems:
            stems.append(term)
    return stems


BM25_K1 = 1.2  # the usual defaults (Lucene's, tantivy's, FTS5's)
BM25_B = 0.75


def bm25_idf(total: int, doc_freq: int) -> float:
    """BM25's IDF as Lucene and tantivy compute it: ln(1 + (N - n + 0.5) / (n + 0.5)), positive for every term."""
    return math.log(1.0 + (total - doc_freq + 0.5) / (doc_freq + 0.5))


def bm25_bound(total: int, doc_freqs: Sequence[int]) -> float:
    """The most BM25 any chunk can score for terms of these document frequencies among ``total`` chunks: each
    term's IDF times (k1 + 1), the limit of its term-frequency factor."""
    return sum(bm25_idf(total, n) * (BM25_K1 + 1) for n in doc_freqs)
