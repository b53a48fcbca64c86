"""Congruence of the two storage engines: the same seeded random writes and searches, through the services, on the
embedded SQLite store and on PostgreSQL side by side, their answers compared directly (documents, list order and
totals, chunks, keyword / vector / hybrid rankings and scores under random filters, deletes, re-upserts, parent
updates, Dify documents, segments and metadata filters, tables and their rows).

Both engines index the one keyword analyzer's terms (``search/analysis.py``), so BM25 sees the same terms on both;
generated chunks hold at most 40 terms (the embedded store's tantivy index keeps a chunk's length exactly up to 40),
so it sees the same lengths too. ``test_natural_text_bm25`` checks prose in English, Chinese, Japanese, Korean,
Arabic and German (stemming, stopwords, bigrams, normalisation).

Divergences found are pinned as strict xfails, each raising only its own failure: ``test_long_chunks_bm25``,
``test_sql_order_by_nulls``, and two seeds of ``test_documents_and_searches_agree`` where one engine's HNSW index no
longer reaches a live chunk after deletes (``sqlite-hnsw-recall``, ``postgres-hnsw-recall``)."""

# B023: every lambda below is called at once, inside ``both()``, never after its loop variables moved on.
# ruff: noqa: B023

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from alexandria.domain.dify import Segment
from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.domain.metadata_filter import MetadataCondition, MetadataFilter, MetadataFilterError, Operator
from alexandria.domain.models import Document, SearchMode
from alexandria.domain.tables import TableRow
from alexandria.errors import NotFound
from alexandria.ingest.chunkers import Section
from alexandria.services.dify import DocumentOptions
from alexandria.services.documents import UpsertRequest
from alexandria.services.tables import TableRef, TableUpsert
from tests.congruence import (
    BM25,
    FOLDERS,
    FUSED,
    IDS,
    TAGS,
    WORDS,
    Pair,
    Ranked,
    Side,
    assert_same_ranking,
    both,
    close,
    compare_search,
    doc_view,
    latest,
    open_pair,
    words,
)

T0 = 1_700_000_000_000


@pytest.fixture
def open_sides(tmp_path: Path, pg_url: str) -> Iterator[Callable[..., Pair]]:
    opened: list[Side] = []

    def make(**overrides: Any) -> Pair:
        pair = open_pair(tmp_path, pg_url, **overrides)
        opened.extend(pair)
        return pair

    yield make
    for side in opened:
        side.core.close()


# --------------------------------------------------------------------------------------------------------------------
# Dust documents: random upserts (sync and async), identical re-upserts, deletes and parent updates; searches


def random_request(rng: random.Random, doc_id: str) -> UpsertRequest:
    if rng.random() < 0.2:
        section = Section("# " + words(rng, 1, 2), None, (Section(None, words(rng, 1, 30), ()),) * rng.randint(1, 2))
    else:
        section = Section(None, words(rng, 1, 50), ())
    folders = tuple(rng.sample(FOLDERS, rng.randint(0, 2)))
    tags = tuple(rng.sample(TAGS, rng.randint(0, 3)))
    if rng.random() < 0.1:
        tags += (f"title:{rng.choice(WORDS)}",)
    return UpsertRequest(
        doc_id,
        section,
        title=rng.choice([None, None, f"{doc_id} {rng.choice(WORDS)}", "  "]),
        mime_type=rng.choice([None, "text/plain"]),
        source_url=rng.choice([None, f"https://example.com/{doc_id}"]),
        timestamp=rng.choice([None, float(T0 + rng.randint(0, 30)), (T0 + rng.randint(0, 30_000)) / 1000]),
        tags=tags,
        parents=(doc_id, *folders) if rng.random() < 0.8 else None,
        parent_id=folders[0] if folders else None,
    )


def random_filter(rng: random.Random) -> DocumentFilter:
    def pick(pool: list[str]) -> tuple[str, ...] | None:
        return None if rng.random() < 0.6 else tuple(rng.sample(pool, rng.randint(0, 2)))

    lo = T0 + rng.randint(0, 30) if rng.random() < 0.3 else None
    hi = T0 + rng.randint(0, 30) if rng.random() < 0.3 else None
    return DocumentFilter(pick(TAGS), pick(TAGS), pick(FOLDERS + IDS[:4]), pick(FOLDERS), lo, hi)


def random_filters(rng: random.Random) -> FilterSet:
    roll = rng.random()
    if roll < 0.3:
        return FilterSet()
    return FilterSet(tuple(random_filter(rng) for _ in range(1 if roll < 0.8 else 2)))


def compare_documents(pair: Pair, rng: random.Random) -> None:
    listed = both(pair, lambda s: _listed(s, None, 1000, 0), "every document, latest first")
    assert isinstance(listed, tuple)
    ids = [d["document_id"] for d in listed[0]]
    wanted = rng.sample(IDS, rng.randint(0, 6)) if rng.random() < 0.5 else None
    limit, offset = rng.randint(0, 8), rng.randint(0, 6)
    both(pair, lambda s: _listed(s, wanted, limit, offset), f"list {wanted} limit {limit} offset {offset}")
    for doc_id in IDS:
        both(pair, lambda s: doc_view(s.core.documents.get(s.ds, doc_id)), f"get {doc_id}")
        both(pair, lambda s: s.core.store.document_hash(s.ds, doc_id), f"hash of {doc_id}")
        both(pair, lambda s: _chunks(s, doc_id), f"chunks of {doc_id}")
        both(pair, lambda s: _vectors(s, doc_id), f"stored vectors of {doc_id}")
    assert len(ids) == len(set(ids))


def _listed(side: Side, wanted: list[str] | None, limit: int, offset: int) -> tuple[list[object], int]:
    docs, total = side.core.documents.list(side.ds, wanted, limit, offset)
    return [doc_view(d, ("document_id", "timestamp", "hash", "chunk_count")) for d in docs], total


def _vectors(side: Side, doc_id: str) -> dict[str, list[float]]:
    """The document's stored vectors by chunk hash (float32 on both engines: equal, not just close)."""
    return {h: [float(x) for x in v] for h, v in side.core.store.vectors_by_chunk_hash(side.ds, doc_id).items()}


def _chunks(side: Side, doc_id: str) -> list[tuple[int, str, str]] | None:
    doc = side.core.store.get_document(side.ds, doc_id, with_text=False)
    if doc is None:
        return None
    return [(c.offset, c.text, c.hash) for c in side.core.store.chunks_of_documents([doc.pk])]


def compare_searches(pair: Pair, rng: random.Random) -> None:
    for _ in range(3):
        query = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
        filters = random_filters(rng)
        k = rng.choice([1, 3, 10, 40, 500])
        for mode in SearchMode:
            compare_search(pair, query, mode, filters, k)
        bound = [s.core.store.keyword_score_bound(s.ds, query) for s in pair]
        assert close(bound[0], bound[1], **BM25), (query, bound)
        both(pair, lambda s: latest(s, filters, k), f"latest documents k={k} {filters}")


ANN_FILTERED = {"exact_search_max_candidates": 6, "hybrid_alpha": 0.3}


@pytest.mark.parametrize(
    ("seed", "overrides"),
    [
        pytest.param(1, {}, id="exact-filtered"),
        pytest.param(2, ANN_FILTERED, id="ann-filtered"),
        pytest.param(41, {}, id="exact-filtered-2"),
        pytest.param(40, ANN_FILTERED, id="ann-filtered-2"),
        # seeds where each engine's HNSW graph once lost a live chunk (usearch after removals; pgvector before a
        # vacuum): both now fall back to exact search when HNSW returns fewer hits than there are eligible chunks
        pytest.param(17, {}, id="sqlite-hnsw-recall"),
        pytest.param(30, ANN_FILTERED, id="postgres-hnsw-recall"),
    ],
)
def test_documents_and_searches_agree(open_sides: Callable[..., Pair], seed: int, overrides: dict[str, Any]) -> None:
    pair = open_sides(**overrides)
    for side in pair:
        side.ds = side.core.catalog.create_data_source(side.ws, "docs", embedder="fake")
    with pair[1].core.store.db.write() as conn:  # type: ignore[attr-defined]  # the storage facade
        # A vacuum restores pgvector's HNSW recall (see postgres-hnsw-recall): not at a time set by the machine's speed
        conn.execute("ALTER TABLE chunks SET (autovacuum_enabled = off)")
    rng = random.Random(seed)
    last: dict[str, UpsertRequest] = {}
    for step in range(1, 121):
        doc_id = rng.choice(IDS)
        roll = rng.random()
        if roll < 0.45 or not last:
            req = random_request(rng, doc_id)
            last[doc_id] = req
            both(pair, lambda s: _upserted(s, req), f"step {step}: upsert {req}")
        elif roll < 0.55:
            doc_id = rng.choice(sorted(last))
            req = last[doc_id]
            both(pair, lambda s: _upserted(s, req), f"step {step}: identical re-upsert of {doc_id}")
        elif roll < 0.7:
            req = random_request(rng, doc_id)
            last[doc_id] = req
            both(pair, lambda s: _queued(s, req), f"step {step}: async upsert {req}")
        elif roll < 0.82:
            both(pair, lambda s: s.core.documents.delete(s.ds, doc_id), f"step {step}: delete {doc_id}")
            last.pop(doc_id, None)
        else:
            folders = tuple(rng.sample(FOLDERS, rng.randint(0, 2)))
            parents = (doc_id, *folders) if rng.random() < 0.9 else (rng.choice(FOLDERS),)
            parent_id = parents[1] if len(parents) > 1 else rng.choice([None, None, "f1"])
            both(
                pair,
                lambda s: s.core.documents.update_parents(s.ds, doc_id, parents, parent_id),
                f"step {step}: parents of {doc_id} := {parents} / {parent_id}",
            )
        if step % 15 == 0:
            for side in pair:
                side.core.jobs.pool(0).drain()
            compare_documents(pair, rng)
            compare_searches(pair, rng)


def _upserted(side: Side, req: UpsertRequest) -> tuple[bool, int, object]:
    result = side.core.documents.upsert(side.ds, req, T0)
    return result.changed, result.embedded_chunks, doc_view(result.document)


def _queued(side: Side, req: UpsertRequest) -> tuple[bool, object]:
    result = side.core.documents.upsert_async(side.ds, req, T0)
    return result.job is None, doc_view(result.document)


# --------------------------------------------------------------------------------------------------------------------
# English text: the two keyword analyzers part


PROSE = [
    "The cat sat on the mat and watched the birds in the garden.",
    "Running quickly, the runners were generously rewarded for their running.",
    "A study of the effects of caffeine on the sleep of university students.",
    "Caffeine is a stimulant; students who drink coffee sleep less.",
    "Birds were singing while the cats were sleeping on the mats.",
    "北京是中华人民共和国的首都，也是全国的政治中心。",
    "上海是中国最大的城市，位于长江入海口。",
    "東京都は日本の首都であり、人口が最も多い都市です。",
    "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها.",
    "وُلِدَ الكاتبُ في مدينةِ الإسكندرية عام ١٩٠٠.",
    "Die Straße führt über den Fluss zur Universität München.",
]


def test_natural_text_bm25(open_sides: Callable[..., Pair]) -> None:
    pair = open_sides()
    for side in pair:
        side.ds = side.core.catalog.create_data_source(side.ws, "docs", embedder="fake")
    for i, text in enumerate(PROSE):
        both(pair, lambda s: _upserted(s, UpsertRequest(f"p{i}", Section(None, text, ()))), f"upsert p{i}")
    queries = ("cat mat", "caffeine students sleep", "running birds", "中国的首都", "日本の首都", "대한민국 수도",
               "عاصمة مصر", "الاسكندرية", "Strasse Universitat")  # fmt: skip
    for query in queries:
        compare_search(pair, query, SearchMode.KEYWORD, FilterSet(), 10)
        for side in pair:  # agreeing on nothing found would prove nothing
            assert side.core.search.rank_chunks(side.ds, query, SearchMode.KEYWORD, FilterSet(), 10), query


@pytest.mark.xfail(
    strict=True,
    reason="BM25 of a chunk longer than 40 words differs: tantivy (the embedded store) keeps a chunk's length in one "
    "byte, exact up to 40 and rounded down to one of 256 steps above (as Lucene does); PostgreSQL keeps it exactly",
)
def test_long_chunks_bm25(open_sides: Callable[..., Pair]) -> None:
    pair = open_sides()
    for side in pair:
        side.ds = side.core.dify.create_dataset(side.ws, {"name": "kb", "indexing_technique": "high_quality"})
    rng = random.Random(4)
    for i in range(6):
        text = words(rng, 41, 120)  # one segment (Dify's segments are not bounded by the embedder's chunk size)
        both(pair, lambda s: s.label(s.core.dify.create_by_text(s.ds, f"l{i}", text, DocumentOptions())[1]), "add")
    for side in pair:
        side.core.jobs.pool(0).drain()
    for query in ("alpha beta", "quark", "omega sigma tau"):
        compare_search(pair, query, SearchMode.KEYWORD, FilterSet(), 10)


# --------------------------------------------------------------------------------------------------------------------
# Dify: documents by text, segments, document flags, metadata values, retrieval under metadata filters

NAMES = [f"note {i}" for i in range(6)]
AUTHORS = ["ada", "bob", "carol", "ada lovelace", "Bob"]
DIFY_METHODS = ("semantic_search", "full_text_search", "hybrid_search")
RECORD_KEYS = ("word_count", "tokens", "doc_form", "error", "data_source_type", "indexing_technique")
DIFY_FIELDS = ("title", "text_size", "chunk_count", "token_count", "enabled", "archived", "index_state", "doc_metadata")
SEGMENT_FIELDS = ("position", "content", "answer", "keywords", "hash", "word_count", "tokens", "enabled", "status")


def paragraphs(rng: random.Random) -> str:
    # a segment joins paragraphs: at most 40 words in all (see test_long_chunks_bm25)
    return "\n\n".join(words(rng, 3, 10) for _ in range(rng.randint(1, 4)))


def dify_doc(side: Side, label: str) -> Document | None:
    return side.core.store.get_document_by_uuid(side.ds, side.unlabel(label), with_text=True)


def dify_view(side: Side, label: str) -> object:
    doc = dify_doc(side, label)
    if doc is None:
        return None
    record = {k: (doc.dify or {}).get(k) for k in RECORD_KEYS}
    segments = side.core.store.document_segments(doc.pk)
    return (
        doc_view(doc, (*DIFY_FIELDS, "text")),
        record,
        [_segment(s) for s in segments],
        [s.hit_count for s in segments],
    )


def _segment(seg: Segment) -> dict[str, object]:
    return {f: getattr(seg, f) for f in SEGMENT_FIELDS}


def random_condition(rng: random.Random) -> MetadataCondition | None:
    name = rng.choice(["author", "author", "year", "year", "missing"])
    op = rng.choice(get_args(Operator))
    value: Any
    if op in ("in", "not in"):
        value = rng.choice([", ".join(rng.sample(AUTHORS, 2)), rng.sample(AUTHORS, 2), str(rng.randint(1990, 1995))])
    elif op in ("=", "≠", ">", "<", "≥", "≤", "before", "after"):
        value = rng.choice([rng.randint(1990, 1996), str(rng.randint(1990, 1996)), 1992.5])
    else:
        value = rng.choice([rng.choice(AUTHORS), rng.choice(AUTHORS)[:2], "a", str(rng.randint(1990, 1995)), None])
    try:
        return MetadataCondition(name, op, value)
    except MetadataFilterError:  # a combination the request parser refuses
        return None


def random_metadata_filter(rng: random.Random) -> MetadataFilter | None:
    if rng.random() < 0.2:
        return None
    conditions = tuple(c for c in (random_condition(rng) for _ in range(rng.randint(1, 3))) if c is not None)
    return MetadataFilter(rng.choice(["and", "or"]), conditions)


def retrieved(side: Side, query: str, method: str, metadata: MetadataFilter | None) -> Ranked:
    model = {"search_method": method, "top_k": 200}  # every match: no tie is cut, so hit counts stay comparable
    records = side.core.dify_retrieval.retrieve(side.ds, query, model, metadata)
    return [((side.key(r.document), r.segment.position if r.segment else -1), r.score) for r in records]


def compare_dify(pair: Pair, rng: random.Random) -> None:
    for label in sorted(pair[0].labels.values()):
        both(pair, lambda s: dify_view(s, label), f"dify document {label}")
    keyword = rng.choice([None, "note", "3", "NOTE 1", "%"])
    status = rng.choice([None, "available", "disabled", "queuing"])
    page, limit = rng.randint(1, 3), rng.randint(1, 4)
    both(
        pair,
        lambda s: [s.key(d) for d in s.core.dify.list_documents(s.ds, keyword, status, page, limit)[0]],
        f"dify documents {keyword!r} {status} page {page} limit {limit}",
    )
    both(pair, lambda s: s.core.dify.list_documents(s.ds, keyword, status, 1, 100)[1], "dify document total")
    both(pair, lambda s: s.core.store.data_source_counts([s.ds.id])[s.ds.id], "dataset counts")
    both(pair, lambda s: [(f.name, f.type, n) for f, n in s.core.store.list_metadata_fields(s.ds)], "fields")
    for label in rng.sample(sorted(pair[0].labels.values()), 2):
        word = rng.choice([None, rng.choice(WORDS), "A"])
        both(pair, lambda s: _segments(s, label, word), f"segments of {label} matching {word!r}")
    for _ in range(3):
        query = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
        metadata = random_metadata_filter(rng)
        for method in DIFY_METHODS:
            got = [retrieved(s, query, method, metadata) for s in pair]
            assert_same_ranking(f"dify {method} {query!r} {metadata}", got[0], got[1], 200, **FUSED)
        filters = FilterSet((DocumentFilter(metadata=metadata),)) if metadata else FilterSet()
        k = rng.choice([2, 10, 300])
        for mode in SearchMode:
            compare_search(pair, query, mode, filters, k)
        both(pair, lambda s: latest(s, filters, k), f"latest dify documents k={k} {metadata}")


def _segments(side: Side, label: str, word: str | None) -> object:
    doc = dify_doc(side, label)
    if doc is None:
        return None
    found, total = side.core.store.list_segments(doc.pk, [], word, 3, 1)
    return [_segment(s) for s in found], total


def dify_step(pair: Pair, rng: random.Random, step: int) -> None:
    roll = rng.random()
    what = f"step {step}: "
    labels = sorted(pair[0].labels.values())
    if roll < 0.3 or not labels:
        name, text = rng.choice(NAMES), paragraphs(rng)
        both(pair, lambda s: s.label(s.core.dify.create_by_text(s.ds, name, text, DocumentOptions())[1]), what + name)
    else:
        label = rng.choice(labels)
        what += label + " "
        if roll < 0.4:
            name, text = rng.choice(NAMES), paragraphs(rng)
            both(pair, lambda s: _update(s, label, name, text), what + f"update as {name}")
        elif roll < 0.55:
            items = [{"content": words(rng, 2, 20), "keywords": rng.sample(WORDS, 2)} for _ in range(rng.randint(1, 2))]
            both(pair, lambda s: _add_segments(s, label, items), what + f"add {items}")
        elif roll < 0.7:
            position = rng.randint(1, 4)
            body: dict[str, Any] = rng.choice(
                [{"enabled": False}, {"enabled": True}, {"content": words(rng, 2, 15)}, {"keywords": ["kw"]}]
            )
            both(pair, lambda s: _update_segment(s, label, position, body), what + f"segment {position} {body}")
        elif roll < 0.75:
            position = rng.randint(1, 4)
            both(pair, lambda s: _delete_segment(s, label, position), what + f"delete segment {position}")
        elif roll < 0.85:
            flags = rng.choice([{"enabled": False}, {"enabled": True}, {"archived": True}, {"archived": False}])
            both(pair, lambda s: _flag(s, label, flags), what + f"flags {flags}")
        elif roll < 0.9:
            both(pair, lambda s: _delete(s, label), what + "delete")
        else:
            values: dict[str, Any] = {"author": rng.choice([*AUTHORS, None]), "year": rng.randint(1990, 1995)}
            if rng.random() < 0.3:
                values = {"year": str(rng.randint(1990, 1995))}
            both(pair, lambda s: _set_metadata(s, label, values), what + f"metadata {values}")
    for side in pair:
        side.core.jobs.pool(0).drain()


def _existing(side: Side, label: str) -> Document:
    doc = dify_doc(side, label)
    if doc is None:
        raise NotFound("gone")
    return doc


def _update(side: Side, label: str, name: str, text: str) -> str:
    return side.key(side.core.dify.update_by_text(side.ds, _existing(side, label), name, text, DocumentOptions())[0])


def _add_segments(side: Side, label: str, items: list[dict[str, Any]]) -> list[dict[str, object]]:
    return [_segment(s) for s in side.core.dify_segments.create_segments(side.ds, _existing(side, label), items)]


def _update_segment(side: Side, label: str, position: int, body: dict[str, Any]) -> object:
    doc = _existing(side, label)
    segs = [s for s in side.core.store.document_segments(doc.pk) if s.position == position]
    return _segment(side.core.dify_segments.update_segment(side.ds, doc, segs[0], body)) if segs else None


def _delete_segment(side: Side, label: str, position: int) -> int:
    doc = _existing(side, label)
    segs = [s for s in side.core.store.document_segments(doc.pk) if s.position == position]
    if segs:
        side.core.dify_segments.delete_segment(side.ds, doc, segs[0])
    return len(segs)


def _flag(side: Side, label: str, flags: dict[str, bool]) -> None:
    side.core.store.set_document_flags(side.ds, _existing(side, label).pk, **flags)


def _delete(side: Side, label: str) -> None:
    side.core.dify.delete_document(side.ds, _existing(side, label))


def _set_metadata(side: Side, label: str, values: dict[str, Any]) -> None:
    side.core.store.set_doc_metadata(_existing(side, label).pk, values)


def test_dify_documents_segments_and_metadata_agree(open_sides: Callable[..., Pair]) -> None:
    pair = open_sides()
    for side in pair:
        side.ds = side.core.dify.create_dataset(side.ws, {"name": "kb", "indexing_technique": "high_quality"})
        side.core.store.create_metadata_field(side.ds, "author", "string")
        side.core.store.create_metadata_field(side.ds, "year", "number")
    rng = random.Random(5)
    for step in range(1, 81):
        dify_step(pair, rng, step)
        if step % 20 == 0:
            compare_dify(pair, rng)


# --------------------------------------------------------------------------------------------------------------------
# Tables: metadata upserts, parent updates, row upserts (with truncate), row deletes, listing and SQL

TABLE_IDS = ["tab_a", "tab_b", "tab_c"]
TABLE_FIELDS: tuple[str, ...] = ("table_id", "name", "title", "description", "mime_type", "timestamp", "tags")
TABLE_FIELDS += (
    "parents",
    "parent_id",
    "source_url",
    "remote_database_table_id",
    "remote_database_secret_id",
    "schema",
)
QUERIES = [
    "SELECT count(*) AS n, sum(a) AS s, avg(c) AS m, min(b) AS lo, max(b) AS hi, max(e) AS late FROM {t}",
    "SELECT b, count(*) AS n, sum(c) AS total FROM {t} WHERE b IS NOT NULL GROUP BY b ORDER BY b",
    # where NULLs sort differs between the engines (see test_sql_order_by_nulls): spelled out
    "SELECT a, b, c, d, e FROM {t} WHERE a IS NOT NULL "
    "ORDER BY a, b IS NULL, b, c IS NULL, c, d IS NULL, d, e IS NULL, e LIMIT 7",
]


def random_cell(rng: random.Random, column: str) -> Any:
    if rng.random() < 0.15:
        return None
    if column == "a":
        return rng.randint(-5, 5)
    if column == "b":
        return rng.choice(["alpha", "Beta", "gamma", "beta", "Alpha", ""])
    if column == "c":
        return rng.choice([1.5, -0.25, 2.0, 3.75, 10.125])
    if column == "d":
        return rng.random() < 0.5
    return {"type": "datetime", "epoch": T0 + rng.randint(0, 3) * 86_400_000 + rng.randint(0, 999)}


def random_rows(rng: random.Random) -> list[TableRow]:
    ids = rng.sample(range(30), rng.randint(1, 8))
    columns = [c for c in "abcde" if rng.random() < 0.85] or ["a"]
    return [TableRow(f"r{i}", {c: random_cell(rng, c) for c in columns}) for i in ids]


def compare_tables(pair: Pair, rng: random.Random) -> None:
    both(pair, lambda s: [doc_view(t, TABLE_FIELDS) for t in s.core.tables.list_all(s.ds)], "every table")
    for table_id in TABLE_IDS:
        both(pair, lambda s: doc_view(s.core.tables.get(s.ds, table_id), TABLE_FIELDS), f"table {table_id}")
        both(pair, lambda s: s.core.tables.list_rows(s.ds, table_id, 1000, 0), f"rows of {table_id}")
        limit, offset = rng.randint(0, 5), rng.randint(0, 5)
        both(pair, lambda s: s.core.tables.list_rows(s.ds, table_id, limit, offset), f"{table_id} rows page")
        row_id = f"r{rng.randint(0, 29)}"
        both(pair, lambda s: s.core.tables.get_row(s.ds, table_id, row_id), f"{table_id} row {row_id}")
        for query in QUERIES:
            sql = query.format(t=table_id)
            both(pair, lambda s: s.core.tables.query([TableRef(s.ds, table_id)], sql), sql)


def test_tables_agree(open_sides: Callable[..., Pair]) -> None:
    pair = open_sides()
    for side in pair:
        side.ds = side.core.catalog.create_data_source(side.ws, "tables", embedder="fake")
    rng = random.Random(9)
    for step in range(1, 61):
        table_id = rng.choice(TABLE_IDS)
        roll = rng.random()
        what = f"step {step}: {table_id} "
        if roll < 0.2:
            folders = tuple(rng.sample(FOLDERS, rng.randint(0, 2)))
            req = TableUpsert(
                name=table_id,
                description=words(rng, 0, 4),
                title=rng.choice([None, " ", f"Title {step}"]),
                table_id=table_id,
                timestamp=rng.choice([None, float(T0 + step)]),
                tags=tuple(rng.sample(TAGS, rng.randint(0, 2))),
                parents=(table_id, *folders),
                parent_id=folders[0] if folders else None,
                source_url=rng.choice([None, "https://example.com/t"]),
            )
            both(pair, lambda s: doc_view(s.core.tables.upsert(s.ds, req, T0), TABLE_FIELDS), what + f"{req}")
        elif roll < 0.6:
            rows, truncate = random_rows(rng), rng.random() < 0.2
            both(pair, lambda s: s.core.tables.upsert_rows(s.ds, table_id, rows, truncate).schema, what + f"{rows}")
        elif roll < 0.75:
            row_id = f"r{rng.randint(0, 29)}"
            both(pair, lambda s: s.core.tables.delete_row(s.ds, table_id, row_id), what + f"delete {row_id}")
        elif roll < 0.85:
            parents = (table_id, *rng.sample(FOLDERS, rng.randint(0, 2)))
            parent_id = parents[1] if len(parents) > 1 else None
            both(pair, lambda s: s.core.tables.update_parents(s.ds, table_id, parents, parent_id), what + "parents")
        elif roll < 0.9:
            both(pair, lambda s: s.core.tables.delete(s.ds, table_id), what + "delete")
        if step % 15 == 0:
            compare_tables(pair, rng)


@pytest.mark.xfail(
    strict=True,
    reason="ORDER BY puts NULLs first on SQLite (Dust's engine) and last on PostgreSQL: the PostgreSQL SQL engine runs "
    "the client's query as written, so `ORDER BY b` returns the rows in another order (and, the schema being built "
    "from the rows in order, its columns and possible values too)",
)
def test_sql_order_by_nulls(open_sides: Callable[..., Pair]) -> None:
    pair = open_sides()
    rows = [TableRow("r1", {"a": 1, "b": "x"}), TableRow("r2", {"a": 2, "b": None})]
    for side in pair:
        side.ds = side.core.catalog.create_data_source(side.ws, "tables", embedder="fake")
        side.core.tables.upsert(side.ds, TableUpsert(name="t", description="", table_id="t"), T0)
        side.core.tables.upsert_rows(side.ds, "t", rows, truncate=False)
    for order in ("b", "b DESC"):
        sql = f"SELECT a, b FROM t ORDER BY {order}"
        both(pair, lambda s: s.core.tables.query([TableRef(s.ds, "t")], sql).rows, sql)
