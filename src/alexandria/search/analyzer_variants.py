"""Keyword analyzers ``alexandria eval --analyzer NAME`` compares with the product's, so a user can see which analysis
suits their corpus. Only ``default`` serves searches (``search/analysis.py``, the same in every engine); the others
exist to be measured against it, by the in-process BM25 of ``search/memory_bm25.py``.

- ``default``: the product's analyzer, unchanged.
- ``unigram``: the same, but Chinese, Japanese and Korean runs as single characters only (no bigrams).
- ``trigram``: every overlapping three characters of the lower-cased text, spaces and punctuation included (SQLite
  FTS5's ``trigram`` tokenizer); a text under three characters has no term.
- ``words``: Unicode words (letters, digits and combining marks; NFKC, case folded), nothing else: no stemming, no
  stopwords, no diacritics removed, a run of Han characters one word (about FTS5's ``unicode61``).
- ``porter``: ``words`` with English Porter stemming of every word of 3 to 64 ASCII letters (FTS5's
  ``porter unicode61``, the store's analysis before ``search/analysis.py``).

Query terms are each analyzer's distinct document terms of the query (``default`` and ``unigram`` also drop
stopwords and keep at most ``MAX_QUERY_TERMS``, as the product does); the terms are OR-ed, as every keyword search is.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from alexandria.errors import InvalidRequest
from alexandria.search import analysis


@dataclass(frozen=True)
class Analyzer:
    name: str
    document_terms: Callable[[str], list[str]]  # every term in order, repeats included
    query_terms: Callable[[str], list[str]]  # the distinct terms searched


def _unigram_document(text: str) -> list[str]:
    return analysis.document_terms(text, cjk_bigrams=False)


def _unigram_query(query: str) -> list[str]:
    return analysis.query_terms(query, cjk_bigrams=False)


def trigrams(text: str) -> list[str]:
    """Every overlapping three characters of the lower-cased text."""
    low = text.lower()
    return [low[i : i + 3] for i in range(len(low) - 2)]


def words(text: str) -> list[str]:
    """The Unicode words of the text, NFKC-normalised and case folded."""
    normal = text.lower() if text.isascii() else unicodedata.normalize("NFKC", text).casefold()
    return analysis._word_pattern().findall(normal)


def porter_words(text: str) -> list[str]:
    """:func:`words`, each of 3 to 64 ASCII characters Porter-stemmed."""
    return [
        analysis._stem("porter", w) if w.isascii() and analysis.STEM_MIN <= len(w) <= analysis.STEM_MAX else w
        for w in words(text)
    ]


def _distinct(terms: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    def query_terms(query: str) -> list[str]:
        return list(dict.fromkeys(terms(query)))

    return query_terms


ANALYZERS: dict[str, Analyzer] = {
    a.name: a
    for a in (
        Analyzer("default", analysis.document_terms, analysis.query_terms),
        Analyzer("unigram", _unigram_document, _unigram_query),
        Analyzer("trigram", trigrams, _distinct(trigrams)),
        Analyzer("words", words, _distinct(words)),
        Analyzer("porter", porter_words, _distinct(porter_words)),
    )
}


def get_analyzer(name: str) -> Analyzer:
    """The analyzer of this name; :class:`InvalidRequest` naming the choices otherwise."""
    found = ANALYZERS.get(name)
    if found is None:
        raise InvalidRequest(f"unknown analyzer {name!r}; one of {', '.join(ANALYZERS)}")
    return found
