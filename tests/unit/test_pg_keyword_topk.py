"""PostgreSQL's best-first keyword search (``storage/postgres/keyword_topk.py``) against a brute-force BM25 over every
posting: the same chunks in the same order with the same scores, for queries of rare and very common terms, at every
k; and it stops early (scores fewer chunks than match) when the top k is settled."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from alexandria.config import Settings
from alexandria.domain.filters import FilterSet
from alexandria.ingest.chunkers import Section
from alexandria.search.keyword import BM25_B, BM25_K1, bm25_idf
from alexandria.services.documents import UpsertRequest
from alexandria.storage.postgres import keyword_topk
from tests.congruence import Side, open_side

VOCAB = [f"w{i:03d}" for i in range(300)]
ZIPF = [1.0 / (i + 1) ** 1.1 for i in range(len(VOCAB))]  # a few words in most chunks, most words rare


def _brute_force(side: Side, lexemes: list[str], k: int) -> list[tuple[int, float]]:
    """BM25 of every chunk holding any lexeme, from all the data source's postings."""
    with side.core.store.db.read() as conn:  # type: ignore[attr-defined]  # the storage facade
        total, length_total = conn.one(
            "SELECT chunk_total, chunk_length_total FROM data_sources WHERE id = ?", (side.ds.id,)
        )
        postings = conn.all(
            "SELECT lexeme, chunk_id, tf, length FROM chunk_terms WHERE data_source_id = ?", (side.ds.id,)
        )
    avgdl = length_total / total
    freq: dict[str, int] = {}
    for lexeme, *_ in postings:
        freq[lexeme] = freq.get(lexeme, 0) + 1
    scores: dict[int, float] = {}
    for lexeme, chunk_id, tf, length in postings:
        if lexeme in lexemes:
            n = freq[lexeme]
            idf = bm25_idf(total, n)
            norm = 1 - BM25_B + BM25_B * length / avgdl
            scores[chunk_id] = scores.get(chunk_id, 0.0) + idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * norm)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]


@pytest.fixture
def side(tmp_path: Path, pg_url: str) -> Side:
    s = open_side("postgres", Settings(data_dir=tmp_path, database_url=pg_url, max_document_mb=1.0))
    s.ds = s.core.catalog.create_data_source(s.ws, "docs", embedder="fake")
    rng = random.Random(7)
    for i in range(160):
        words = rng.choices(VOCAB, weights=ZIPF, k=rng.randint(20, 90))
        s.core.documents.upsert(s.ds, UpsertRequest(f"d{i}", Section(None, " ".join(words), ())), 0)
    return s


@pytest.mark.parametrize("first_depth", [4, 64])
def test_best_first_equals_brute_force(side: Side, first_depth: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyword_topk, "FIRST_DEPTH", first_depth)
    rng = random.Random(first_depth)
    for _ in range(40):
        query = rng.sample(VOCAB[:5], rng.randint(0, 2)) + rng.sample(VOCAB, rng.randint(1, 4))
        k = rng.choice([1, 3, 10, 50])
        got = side.core.store.keyword_search(side.ds, " ".join(query), FilterSet(), k)
        every = dict(_brute_force(side, query, 1_000_000))
        want = _brute_force(side, query, k)
        assert len({h.pk for h in got}) == len(got) == len(want), query
        # the k best chunks (a tie within rounding may list its members in either order) with their exact scores
        assert [every.get(h.pk, -1.0) for h in got] == pytest.approx([s for _, s in want], rel=1e-9), query
        assert [h.score for h in got] == pytest.approx([s for _, s in want], rel=1e-9)


def test_stops_before_reading_every_match(side: Side, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyword_topk, "FIRST_DEPTH", 4)
    scored: list[int] = []
    exact = keyword_topk.exact_scores

    def counting(conn, chunk_ids, *rest):  # type: ignore[no-untyped-def]
        scored.append(len(chunk_ids))
        return exact(conn, chunk_ids, *rest)

    monkeypatch.setattr(keyword_topk, "exact_scores", counting)
    # the most common word matches most chunks; a rare one settles the top 1 at once
    query = [VOCAB[0], VOCAB[150]]
    matching = {pk for pk, _ in _brute_force(side, query, 10_000)}
    got = side.core.store.keyword_search(side.ds, " ".join(query), FilterSet(), 1)
    assert [h.pk for h in got] == [pk for pk, _ in _brute_force(side, query, 1)]
    assert scored and max(scored) < len(matching) / 2
