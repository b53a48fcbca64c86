"""The analyzers ``alexandria eval --analyzer`` compares (``search/analyzer_variants.py``), script by script, and the
in-memory BM25 that ranks with them (``search/memory_bm25.py``)."""

from __future__ import annotations

import pytest

from alexandria.errors import InvalidRequest
from alexandria.search import analysis
from alexandria.search.analyzer_variants import ANALYZERS, get_analyzer
from alexandria.search.keyword import BM25_B, BM25_K1, bm25_idf
from alexandria.search.memory_bm25 import MemoryBM25


def doc(name: str, text: str) -> list[str]:
    return ANALYZERS[name].document_terms(text)


def query(name: str, text: str) -> list[str]:
    return ANALYZERS[name].query_terms(text)


def test_the_choices_and_an_unknown_name() -> None:
    assert {"default", "unigram", "trigram", "words", "porter"} <= set(ANALYZERS)
    with pytest.raises(InvalidRequest) as exc:
        get_analyzer("snowball")
    assert "snowball" in exc.value.message and "trigram" in exc.value.message


def test_default_is_the_products_analyzer() -> None:
    for text in ("The Runners were RUNNING", "Die Kinder spielten im Garten", "北京大学", "والكتاب الجديد"):
        assert doc("default", text) == analysis.document_terms(text)
        assert query("default", text) == analysis.query_terms(text)
    assert doc("default", "The Runners were RUNNING") == ["the", "runner", "were", "run"]


def test_english() -> None:
    text = "The Runners were RUNNING"
    assert doc("unigram", text) == ["the", "runner", "were", "run"]  # only CJK differs from the default
    assert query("unigram", text) == ["runner", "run"]  # stopwords dropped, as the default does
    assert doc("words", text) == ["the", "runners", "were", "running"]  # no stemming
    assert query("words", text) == ["the", "runners", "were", "running"]  # no stopwords dropped
    assert doc("porter", text) == ["the", "runner", "were", "run"]
    assert doc("trigram", "Abc de") == ["abc", "bc ", "c d", " de"]  # lower-cased, spaces included
    assert doc("trigram", "ab") == []
    assert doc("trigram", "aaaa") == ["aaa", "aaa"] and query("trigram", "aaaa") == ["aaa"]


def test_german() -> None:
    text = "Die Kinder spielten im Garten"
    assert "kind" in doc("default", text)  # German Snowball: the text uses German's common words
    assert doc("porter", text) == ["die", "kinder", "spielten", "im", "garten"]  # English rules leave these
    assert doc("words", "Die Häuser") == ["die", "häuser"]  # diacritics kept
    assert doc("default", "Die Häuser")[-1] == "haus"  # the default folds them and stems
    assert doc("trigram", "Häuser") == ["häu", "äus", "use", "ser"]


def test_chinese() -> None:
    text = "北京大学"
    assert doc("default", text) == ["北", "京", "大", "学", "北京", "京大", "大学"]
    assert doc("unigram", text) == ["北", "京", "大", "学"]
    assert query("unigram", "北京大学在北京") == ["北", "京", "大", "学", "在"]
    assert doc("trigram", text) == ["北京大", "京大学"]
    assert doc("words", text + " ist") == ["北京大学", "ist"]  # a run of Han characters is one word
    assert doc("porter", text) == ["北京大学"]
    assert doc("words", "ＡＢＣ") == ["abc"]  # NFKC


def test_arabic() -> None:
    text = "والكتاب الجديد"
    assert doc("default", text) == ["كتاب", "جديد"]  # normalised and light-stemmed
    assert doc("unigram", text) == ["كتاب", "جديد"]
    assert doc("words", text) == ["والكتاب", "الجديد"]
    assert doc("porter", text) == ["والكتاب", "الجديد"]  # Porter is for ASCII words only
    assert doc("trigram", "الكتاب") == ["الك", "لكت", "كتا", "تاب"]


TEXTS = ["apple banana", "apple apple cherry", "cherry date elder fig grape", "banana"]


def bm25(text_terms: list[str], term: str, df: int, average: float) -> float:
    """One term's BM25 in one text, written out from its definition."""
    tf = text_terms.count(term)
    return (
        bm25_idf(len(TEXTS), df)
        * tf
        * (BM25_K1 + 1)
        / (tf + BM25_K1 * (1 - BM25_B + BM25_B * len(text_terms) / average))
    )


def test_memory_bm25_ranks_a_tiny_corpus() -> None:
    index = MemoryBM25(TEXTS, str.split)
    assert index.doc_freq("apple") == 2 and index.doc_freq("nope") == 0
    # more occurrences win; a shorter text wins at equal occurrences; a text holding both terms wins
    assert [row for row, _ in index.top(["apple"], 10)] == [1, 0]
    assert [row for row, _ in index.top(["cherry"], 10)] == [1, 2]
    assert [row for row, _ in index.top(["banana"], 10)] == [3, 0]
    assert index.top(["apple", "banana"], 10)[0][0] == 0
    assert index.top(["nope"], 10) == []
    assert len(index.top(["apple", "banana", "cherry"], 2)) == 2
    average = sum(len(t.split()) for t in TEXTS) / len(TEXTS)
    scores = dict(index.top(["apple", "banana"], 10))
    expected = bm25(TEXTS[0].split(), "apple", 2, average) + bm25(TEXTS[0].split(), "banana", 2, average)
    assert scores[0] == pytest.approx(expected)
    assert scores[3] == pytest.approx(bm25(TEXTS[3].split(), "banana", 2, average))


def test_memory_bm25_under_an_analyzer() -> None:
    texts = ["北京大学的学生", "上海的大学", "京都"]
    bigrams = MemoryBM25(texts, ANALYZERS["default"].document_terms)
    assert bigrams.top(ANALYZERS["default"].query_terms("北京"), 10)[0][0] == 0
    words = MemoryBM25(texts, ANALYZERS["words"].document_terms)
    assert words.top(ANALYZERS["words"].query_terms("北京"), 10) == []  # no text is the word 北京
