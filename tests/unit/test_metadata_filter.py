"""Dify metadata_filtering_conditions: parsing, the reference evaluator, and the SQLite compilation agreeing with it."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

from alexandria.domain.metadata_filter import (
    MetadataCondition,
    MetadataFilter,
    MetadataFilterError,
    Operator,
    matches_metadata,
    parse_metadata_filter,
)
from alexandria.storage.sqlite.metadata_sql import compile_metadata_filter

ALL_OPERATORS: tuple[Operator, ...] = (
    "contains",
    "not contains",
    "start with",
    "end with",
    "is",
    "is not",
    "empty",
    "not empty",
    "in",
    "not in",
    "=",
    "≠",
    ">",
    "<",
    "≥",
    "≤",
    "before",
    "after",
)

# --------------------------------------------------------------------------------------------------------------------
# helpers


def _connect(docs: Mapping[int, Mapping[str, object]], *, ensure_ascii: bool | None = None) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE documents (id INTEGER PRIMARY KEY, doc_metadata TEXT NOT NULL)")
    rng = random.Random(len(docs))
    conn.executemany(
        "INSERT INTO documents (id, doc_metadata) VALUES (?, ?)",
        [
            (
                doc_id,
                json.dumps(
                    meta, allow_nan=False, ensure_ascii=rng.random() < 0.5 if ensure_ascii is None else ensure_ascii
                ),
            )
            for doc_id, meta in docs.items()
        ],
    )
    return conn


def _sql_ids(conn: sqlite3.Connection, flt: MetadataFilter) -> set[int]:
    params: list[object] = []
    where = compile_metadata_filter(flt, "d", params)
    assert where.count("?") == len(params)
    rows = conn.execute(f"SELECT d.id FROM documents AS d WHERE {where} ORDER BY d.id", params).fetchall()
    return {int(row[0]) for row in rows}


def _py_ids(docs: Mapping[int, Mapping[str, object]], flt: MetadataFilter) -> set[int]:
    return {doc_id for doc_id, meta in docs.items() if matches_metadata(meta, flt)}


def _one(name: str, operator: Operator, value: Any) -> MetadataFilter:
    return MetadataFilter("and", (MetadataCondition(name, operator, value),))


# --------------------------------------------------------------------------------------------------------------------
# concrete documents, one table per operator

DOCS: dict[int, dict[str, object]] = {
    1: {"title": "Annual Report", "year": 2023, "score": 4.5, "lang": "en", "ts": 1700000000},
    2: {"title": "annual summary", "year": "2024", "score": None, "lang": "fr"},
    3: {"title": "100% pure_data", "year": 2022.0, "lang": ""},
    4: {"title": "Ünïcode 文档", "year": "n/a", "flag": True},
    5: {},
    6: {"title": None, "year": None},
}
ALL_IDS = set(DOCS)


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    connection = _connect(DOCS)
    yield connection
    connection.close()


OPERATOR_TABLE: list[tuple[str, Operator, Any, set[int]]] = [
    # contains: literal substring, case-sensitive; % and _ are not wildcards; numbers as their JSON text
    ("title", "contains", "nnual", {1, 2}),
    ("title", "contains", "Annual", {1}),
    ("title", "contains", "ANNUAL", set()),
    ("title", "contains", "%", {3}),
    ("title", "contains", "_", {3}),
    ("title", "contains", "0%", {3}),
    ("title", "contains", "", {1, 2, 3, 4}),
    ("title", "contains", "文", {4}),
    ("year", "contains", "02", {1, 2, 3}),
    ("year", "contains", 2023, {1}),
    ("missing", "contains", "a", set()),
    # not contains: missing key and null never match (SQL NULL)
    ("title", "not contains", "annual", {1, 3, 4}),
    ("title", "not contains", "", set()),
    ("lang", "not contains", "e", {2, 3}),
    ("missing", "not contains", "zzz", set()),
    # start with / end with
    ("title", "start with", "ann", {2}),
    ("title", "start with", "100%", {3}),
    ("title", "start with", "1_0", set()),
    ("year", "start with", "202", {1, 2, 3}),
    ("title", "start with", "", {1, 2, 3, 4}),
    ("title", "start with", "Annual Report and more", set()),
    ("title", "end with", "_data", {3}),
    ("title", "end with", "文档", {4}),
    ("title", "end with", "REPORT", set()),
    ("year", "end with", ".0", {3}),
    ("title", "end with", "", {1, 2, 3, 4}),
    # is / = : text when the value is a str, float when it is a number
    ("lang", "is", "en", {1}),
    ("lang", "is", "", {3}),
    ("year", "is", "2024", {2}),
    ("year", "is", "2023", {1}),
    ("year", "is", "2022", set()),
    ("year", "is", 2022, {3}),
    ("year", "=", 2024, {2}),
    ("year", "=", 2024.0, {2}),
    ("score", "=", 4.5, {1}),
    ("flag", "is", "true", {4}),
    ("flag", "=", 1, set()),
    # is not / ≠ : missing, null and non-numeric (for numbers) never match
    ("lang", "is not", "en", {2, 3}),
    ("year", "is not", "2023", {2, 3, 4}),
    ("year", "≠", 2023, {2, 3}),
    ("score", "≠", 0, {1}),
    # empty / not empty: only a missing key is empty; null and "" are present; value ignored
    ("score", "empty", None, {3, 4, 5, 6}),
    ("title", "empty", None, {5}),
    ("lang", "empty", "ignored", {4, 5, 6}),
    ("score", "not empty", None, {1, 2}),
    ("lang", "not empty", None, {1, 2, 3}),
    ("title", "not empty", 0, {1, 2, 3, 4, 6}),
    # in / not in: list or comma-separated string; empty list -> False / True
    ("lang", "in", ["en", "fr"], {1, 2}),
    ("lang", "in", "en, fr ,", {1, 2}),
    ("lang", "in", [""], {3}),
    ("lang", "in", [" en"], set()),
    ("lang", "in", [], set()),
    ("lang", "in", " , ", set()),
    ("year", "in", ["2023", "2024"], {1, 2}),
    ("year", "in", 2023, {1}),
    ("lang", "not in", ["en"], {2, 3}),
    ("lang", "not in", "en,fr", {3}),
    ("lang", "not in", [], ALL_IDS),
    ("lang", "not in", "", ALL_IDS),
    ("missing", "not in", ["x"], set()),
    # ordering on floats; numeric strings count, non-numeric values and null never match
    ("year", ">", 2022.5, {1, 2}),
    ("year", "<", 2023, {3}),
    ("year", "≥", 2023, {1, 2}),
    ("year", "≤", 2023, {1, 3}),
    ("year", ">", -1e9, {1, 2, 3}),
    ("year", "after", "2023", {2}),
    ("ts", "after", 1600000000, {1}),
    ("ts", "before", 1600000000, set()),
    ("ts", "before", 1700000000.5, {1}),
    ("score", "<", 5, {1}),
    ("flag", ">", 0, set()),
]


@pytest.mark.parametrize(("name", "operator", "value", "expected"), OPERATOR_TABLE)
def test_operator_table(
    conn: sqlite3.Connection, name: str, operator: Operator, value: Any, expected: set[int]
) -> None:
    flt = _one(name, operator, value)
    assert _py_ids(DOCS, flt) == expected
    assert _sql_ids(conn, flt) == expected


def test_operator_table_covers_every_operator() -> None:
    assert {row[1] for row in OPERATOR_TABLE} == set(ALL_OPERATORS)


@pytest.mark.parametrize("operator", [op for op in ALL_OPERATORS if op not in ("empty", "not empty")])
def test_null_value_skips_condition(conn: sqlite3.Connection, operator: Operator) -> None:
    flt = _one("lang", operator, None)
    assert _py_ids(DOCS, flt) == ALL_IDS
    assert _sql_ids(conn, flt) == ALL_IDS


COMBINATIONS: list[tuple[str, list[tuple[str, Operator, Any]], set[int]]] = [
    ("and", [("lang", "is", "en"), ("year", ">", 2000)], {1}),
    ("and", [("lang", "not empty", None), ("year", "<", 2024)], {1, 3}),
    ("or", [("lang", "is", "fr"), ("title", "contains", "%")], {2, 3}),
    ("or", [("score", "empty", None), ("lang", "is", "en")], {1, 3, 4, 5, 6}),
    # a skipped (null-valued) condition is dropped, not made true: under "or" it adds nothing
    ("and", [("lang", "is", "en"), ("title", "contains", None)], {1}),
    ("or", [("lang", "is", "en"), ("title", "contains", None)], {1}),
    ("or", [("lang", "is", None), ("title", "contains", None)], ALL_IDS),
    ("and", [], ALL_IDS),
    ("or", [], ALL_IDS),
    # the empty-list literals combine like any other condition
    ("or", [("lang", "is", "en"), ("x", "not in", [])], ALL_IDS),
    ("and", [("lang", "is", "en"), ("x", "in", [])], set()),
    ("or", [("lang", "is", "en"), ("x", "in", [])], {1}),
]


@pytest.mark.parametrize(("logical", "conds", "expected"), COMBINATIONS)
def test_combinations(
    conn: sqlite3.Connection, logical: str, conds: list[tuple[str, Operator, Any]], expected: set[int]
) -> None:
    flt = MetadataFilter(cast(Any, logical), tuple(MetadataCondition(name, op, value) for name, op, value in conds))
    assert _py_ids(DOCS, flt) == expected
    assert _sql_ids(conn, flt) == expected


def _group(logical: str, *items: MetadataCondition | MetadataFilter) -> MetadataFilter:
    return MetadataFilter(cast(Any, logical), items)


# nested groups (OpenAI's compound filters): each level is joined by its own operator
NESTED: list[tuple[MetadataFilter, set[int]]] = [
    (_group("or", MetadataCondition("lang", "is", "fr"), _group("and", MetadataCondition("lang", "is", "en"),
                                                                 MetadataCondition("year", ">", 2000))), {1, 2}),
    (_group("and", MetadataCondition("lang", "not empty", None),
            _group("or", MetadataCondition("year", "<", 2000), MetadataCondition("lang", "is", "fr"))), {2}),
    (_group("and", _group("or"), MetadataCondition("lang", "is", "en")), {1}),  # an empty group matches everything
    (_group("or", _group("and", MetadataCondition("x", "in", [])), MetadataCondition("lang", "is", "en")), {1}),
    (_group("and", _group("or", _group("and", MetadataCondition("lang", "is", "en")))), {1}),
]  # fmt: skip


@pytest.mark.parametrize(("flt", "expected"), NESTED)
def test_nested_groups(conn: sqlite3.Connection, flt: MetadataFilter, expected: set[int]) -> None:
    assert _py_ids(DOCS, flt) == expected
    assert _sql_ids(conn, flt) == expected


def test_escaped_and_unescaped_storage_agree() -> None:
    docs: dict[int, dict[str, object]] = {1: {"é": "naïve 😀", "k\\b": 2.5}, 2: {"é": "x"}}
    flt = MetadataFilter("and", (MetadataCondition("é", "contains", "ï"), MetadataCondition("k\\b", "is", "2.5")))
    for ensure_ascii in (True, False):
        connection = _connect(docs, ensure_ascii=ensure_ascii)
        try:
            assert _sql_ids(connection, flt) == {1}
        finally:
            connection.close()
    assert _py_ids(docs, flt) == {1}


def test_values_are_bound_parameters() -> None:
    hostile = "x'); DROP TABLE documents; --"
    flt = MetadataFilter(
        "or",
        (
            MetadataCondition(hostile, "contains", hostile),
            MetadataCondition("lang", "in", [hostile, "en"]),
            MetadataCondition("year", ">", 3),
        ),
    )
    params: list[object] = []
    sql = compile_metadata_filter(flt, "docs", params)
    assert hostile not in sql
    assert "DROP" not in sql
    assert "docs.doc_metadata" in sql
    assert hostile in params
    assert 3.0 in params


@pytest.mark.parametrize("alias", ["", "d.x", "d; DROP TABLE t", "1d", "mf_kv"])
def test_compile_rejects_bad_alias(alias: str) -> None:
    with pytest.raises(ValueError):
        compile_metadata_filter(_one("a", "is", "b"), alias, [])


# --------------------------------------------------------------------------------------------------------------------
# parsing


def test_parse_absent_or_empty_is_none() -> None:
    assert parse_metadata_filter(None) is None
    assert parse_metadata_filter({}) is None


def test_parse_full_request() -> None:
    flt = parse_metadata_filter(
        {
            "logical_operator": "or",
            "conditions": [
                {"name": "lang", "comparison_operator": "in", "value": ["en", "fr"]},
                {"name": "year", "comparison_operator": "≥", "value": 2020},
                {"name": "upload_date", "comparison_operator": "before", "value": "1700000000"},
                {"name": "title", "comparison_operator": "empty"},
                {"name": "x", "comparison_operator": "is", "value": None, "extra": "ignored"},
            ],
        }
    )
    assert flt == MetadataFilter(
        "or",
        (
            MetadataCondition("lang", "in", ["en", "fr"]),
            MetadataCondition("year", "≥", 2020),
            MetadataCondition("upload_date", "before", "1700000000"),
            MetadataCondition("title", "empty", None),
            MetadataCondition("x", "is", None),
        ),
    )


def test_parse_defaults() -> None:
    flt = parse_metadata_filter({"conditions": [{"name": "a", "comparison_operator": "is", "value": "b"}]})
    assert flt is not None
    assert flt.logical_operator == "and"
    assert parse_metadata_filter({"logical_operator": "and"}) == MetadataFilter("and", ())
    assert parse_metadata_filter({"logical_operator": "and", "conditions": None}) == MetadataFilter("and", ())


def test_parse_explicit_null_logical_operator_is_or() -> None:
    # Dify keeps the explicit None and combines with or_() because `None == "and"` is false.
    flt = parse_metadata_filter({"logical_operator": None, "conditions": []})
    assert flt == MetadataFilter("or", ())


def test_parse_numeric_string_for_ordering_is_its_number() -> None:
    flt = parse_metadata_filter({"conditions": [{"name": "ts", "comparison_operator": "after", "value": "1600000000"}]})
    assert flt is not None
    assert _py_ids(DOCS, flt) == {1}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "must be an object"),
        ("and", "must be an object"),
        ({"logical_operator": "AND"}, "logical_operator"),
        ({"logical_operator": "xor", "conditions": []}, "logical_operator"),
        ({"conditions": {"name": "a"}}, "conditions must be a list"),
        ({"conditions": "a"}, "conditions must be a list"),
        ({"conditions": ["a"]}, "conditions[0] must be an object"),
        ({"conditions": [{"comparison_operator": "is", "value": "x"}]}, "conditions[0].name is required"),
        ({"conditions": [{"name": 3, "comparison_operator": "is", "value": "x"}]}, "name must be a string"),
        ({"conditions": [{"name": "a", "value": "x"}]}, "comparison_operator is required"),
        ({"conditions": [{"name": "a", "comparison_operator": "like", "value": "x"}]}, "not supported"),
        ({"conditions": [{"name": "a", "comparison_operator": ">=", "value": 1}]}, "not supported"),
        ({"conditions": [{"name": "a", "comparison_operator": ["is"], "value": 1}]}, "not supported"),
        ({"conditions": [{"name": "a", "comparison_operator": "is", "value": True}]}, "value must be"),
        ({"conditions": [{"name": "a", "comparison_operator": "is", "value": {"x": 1}}]}, "value must be"),
        ({"conditions": [{"name": "a", "comparison_operator": "in", "value": ["x", 1]}]}, "must all be strings"),
        ({"conditions": [{"name": "a", "comparison_operator": "contains", "value": ["x"]}]}, "only allowed"),
        ({"conditions": [{"name": "a", "comparison_operator": ">", "value": "abc"}]}, "needs a number"),
        ({"conditions": [{"name": "a", "comparison_operator": "before", "value": "1_000"}]}, "needs a number"),
        ({"conditions": [{"name": "a", "comparison_operator": "<", "value": "inf"}]}, "finite"),
        ({"conditions": [{"name": "a", "comparison_operator": "=", "value": float("nan")}]}, "finite"),
        ({"conditions": [{"name": "a", "comparison_operator": "=", "value": 10**400}]}, "needs a number"),
        ({"conditions": [{"name": 'a"b', "comparison_operator": "is", "value": "x"}]}, "may not contain"),
        ({"conditions": [{"name": "ok", "comparison_operator": "is", "value": "x"}, {"name": "b"}]}, "conditions[1]"),
    ],
)
def test_parse_errors(obj: object, message: str) -> None:
    with pytest.raises(MetadataFilterError) as info:
        parse_metadata_filter(obj)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(MetadataFilterError):
        MetadataCondition("a", cast(Operator, "like"), "x")
    with pytest.raises(MetadataFilterError):
        MetadataFilter(cast(Any, "nand"), ())


# --------------------------------------------------------------------------------------------------------------------
# randomized agreement between the SQL and the reference evaluator

KEYS = ["a", "b", "c", "é", "k.x", "sp ace", "back\\slash", "数"]
ALPHABET = "aAbB%_\\' ,.-e0123456789éÉ文😀"
NUMERIC_STRINGS = ["12", " 1.5 ", "-0", "1e3", "1E+2", "0.25", "01", "1.", "+1", ".5", "NaN", "Infinity", "1_0", "-7"]
FLOATS = [0.1, 2.5, -3.75, 1e20, 1e-7, -0.0, 0.30000000000000004, 123456.789, 1.0]


def _rand_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 6)))


def _rand_stored(rng: random.Random) -> object:
    kind = rng.random()
    if kind < 0.35:
        return _rand_text(rng)
    if kind < 0.45:
        return rng.choice(NUMERIC_STRINGS)
    if kind < 0.62:
        return rng.choice([rng.randint(-20, 20), rng.randint(-(10**12), 10**12), 2**63 + 5, -(2**63)])
    if kind < 0.77:
        return rng.choice([*FLOATS, round(rng.uniform(-30, 30), rng.randint(0, 3)), rng.uniform(-1e6, 1e6)])
    if kind < 0.9:
        return None
    if kind < 0.95:
        return rng.choice([True, False])
    return rng.choice([[1, "a"], {"x": "é"}, []])


def _rand_docs(rng: random.Random, count: int) -> dict[int, dict[str, object]]:
    docs: dict[int, dict[str, object]] = {}
    for doc_id in range(1, count + 1):
        docs[doc_id] = {key: _rand_stored(rng) for key in KEYS if rng.random() < 0.6}
    return docs


def _stored_samples(docs: Mapping[int, Mapping[str, object]], name: str) -> list[object]:
    return [meta[name] for meta in docs.values() if name in meta]


def _rand_value(rng: random.Random, operator: Operator, samples: list[object]) -> Any:
    if rng.random() < 0.08:
        return None
    texts = [s for s in samples if isinstance(s, str)]
    numbers = [s for s in samples if isinstance(s, int | float) and not isinstance(s, bool)]
    if operator in ("contains", "not contains", "start with", "end with"):
        if texts and rng.random() < 0.6:
            text = rng.choice(texts)
            start = rng.randint(0, len(text))
            end = rng.randint(start, len(text))
            if operator == "start with":
                start = 0
            if operator == "end with":
                end = len(text)
            return text[start:end]
        return rng.choice([_rand_text(rng), rng.randint(-5, 30), rng.choice(FLOATS)])
    if operator in ("is", "is not", "=", "≠"):
        if samples and rng.random() < 0.6:
            pick = rng.choice(samples)
            if isinstance(pick, str | int | float) and not isinstance(pick, bool):
                return pick
            if isinstance(pick, bool):
                return "true" if pick else "false"
        return rng.choice([_rand_text(rng), rng.randint(-20, 20), rng.choice(FLOATS), rng.choice(NUMERIC_STRINGS)])
    if operator in ("in", "not in"):
        pool = [s for s in samples if isinstance(s, str)] + [str(n) for n in numbers if isinstance(n, int)]
        items = [rng.choice(pool) for _ in range(rng.randint(0, 3))] if pool else []
        items += [_rand_text(rng) for _ in range(rng.randint(0, 2))]
        form = rng.random()
        if form < 0.6:
            return items
        if form < 0.85:
            return ",".join(f" {item} " if rng.random() < 0.3 else item for item in items)
        return rng.choice([rng.randint(-20, 20), 2.5])
    if operator in ("empty", "not empty"):
        return rng.choice([None, "", "x", 3])
    # ordering
    if numbers and rng.random() < 0.7:
        base = float(rng.choice(numbers))
        return rng.choice([base, base + rng.choice([-1.0, -0.5, 0.5, 1.0]), int(base) if abs(base) < 1e15 else base])
    return rng.choice([rng.randint(-30, 30), rng.uniform(-100, 100), "12", " 1.5 ", "-0", "1e3"])


def _rand_filter(rng: random.Random, docs: Mapping[int, Mapping[str, object]], depth: int = 0) -> MetadataFilter:
    """A random filter; about one condition in six is a nested group (OpenAI's compound filters), two levels deep."""
    conditions: list[MetadataCondition | MetadataFilter] = []
    for _ in range(rng.randint(1, 4)):
        if depth < 2 and rng.random() < 0.17:
            conditions.append(_rand_filter(rng, docs, depth + 1))
            continue
        name = rng.choice([*KEYS, "never_present"])
        operator = rng.choice(ALL_OPERATORS)
        value = _rand_value(rng, operator, _stored_samples(docs, name))
        conditions.append(MetadataCondition(name, operator, value))
    return MetadataFilter(rng.choice(["and", "or"]), tuple(conditions))


@pytest.mark.parametrize("seed", [11, 22, 33, 44, 55])
def test_sql_agrees_with_reference_evaluator(seed: int) -> None:
    rng = random.Random(seed)
    docs = _rand_docs(rng, 60)
    connection = _connect(docs)
    informative = 0
    try:
        for _ in range(100):
            flt = _rand_filter(rng, docs)
            expected = _py_ids(docs, flt)
            assert _sql_ids(connection, flt) == expected, flt
            if expected and expected != set(docs):
                informative += 1
    finally:
        connection.close()
    # the random filters must actually discriminate between documents, or the agreement means little
    assert informative >= 40


@pytest.mark.parametrize("seed", [7, 8])
def test_single_conditions_agree_for_every_operator(seed: int) -> None:
    rng = random.Random(seed)
    docs = _rand_docs(rng, 60)
    connection = _connect(docs)
    try:
        for operator in ALL_OPERATORS:
            hits = 0
            for _ in range(25):
                name = rng.choice(KEYS)
                flt = _one(name, operator, _rand_value(rng, operator, _stored_samples(docs, name)))
                expected = _py_ids(docs, flt)
                assert _sql_ids(connection, flt) == expected, flt
                hits += bool(expected) and expected != set(docs)
            assert hits > 0, operator
    finally:
        connection.close()
