"""The PostgreSQL compilation of Dify metadata filters agrees with the reference evaluator, on a real server.

The operator tables and the random generator are those of ``test_metadata_filter`` (the SQLite twin's tests), run
against a jsonb ``documents (id, doc_metadata)`` table.

The one documented difference (see :mod:`alexandria.storage.postgres.metadata_sql`): jsonb keeps a number as
``numeric``, whose text is plain decimal. A float that ``json.dumps`` writes in exponent form (``1e+20``, ``1e-07``)
and ``-0.0`` read back as ``100000000000000000000``, ``0.0000001`` and ``0.0``; jsonb cannot tell the float ``1e+16``
from the integer ``10000000000000000``, so no SQL can rebuild the literal. The reference is therefore evaluated on
:func:`pg_view` of the metadata, where exactly those floats are replaced by their PostgreSQL text as a string. The
reference treats a strict number-literal string like the number (same text, same value), so nothing else changes;
``test_number_text_is_postgres_numeric_text`` pins the difference itself.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, cast

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alexandria.domain.metadata_filter import MetadataCondition, MetadataFilter, Operator, matches_metadata
from alexandria.storage.postgres.metadata_sql import compile_metadata_filter
from devtools.embedded_pg import EmbeddedPostgres
from tests.unit.test_metadata_filter import (
    ALL_IDS,
    ALL_OPERATORS,
    COMBINATIONS,
    DOCS,
    KEYS,
    NESTED,
    OPERATOR_TABLE,
    _one,
    _rand_docs,
    _rand_filter,
    _rand_value,
    _stored_samples,
)

Conn = psycopg.Connection[tuple[Any, ...]]


# --------------------------------------------------------------------------------------------------------------------
# helpers


def pg_number_text(value: float) -> str:
    """The text PostgreSQL gives back for a float stored in jsonb (from its ``json.dumps`` literal)."""
    number = Decimal(repr(value))
    text = format(number, "f")
    return text.lstrip("-") if number == 0 else text  # numeric has no negative zero


def pg_view(meta: Mapping[str, object]) -> dict[str, object]:
    """``meta`` as PostgreSQL reads it: floats whose literal jsonb does not keep become that text, as a string."""
    out: dict[str, object] = {}
    for key, value in meta.items():
        if isinstance(value, float) and pg_number_text(value) != repr(value):
            out[key] = pg_number_text(value)
        else:
            out[key] = value
    return out


def _py_ids(docs: Mapping[int, Mapping[str, object]], flt: MetadataFilter) -> set[int]:
    return {doc_id for doc_id, meta in docs.items() if matches_metadata(pg_view(meta), flt)}


@pytest.fixture(scope="module")
def pg_db(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """One database for the module (``pg_url`` would create one per test, ~100 tests here)."""
    name = f"mf_{uuid.uuid4().hex[:20]}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)


def _connect(url: str, docs: Mapping[int, Mapping[str, object]]) -> Conn:
    """A session whose temporary ``documents`` table holds ``docs`` (dropped with the session)."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("CREATE TEMP TABLE documents (id INTEGER PRIMARY KEY, doc_metadata JSONB NOT NULL DEFAULT '{}')")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO documents (id, doc_metadata) VALUES (%s, %s)",
            [(doc_id, Jsonb(dict(meta))) for doc_id, meta in docs.items()],
        )
    return conn


def _sql_ids(conn: Conn, flt: MetadataFilter) -> set[int]:
    params: list[object] = []
    where = compile_metadata_filter(flt, "d", params)
    assert where.count("%s") == len(params)
    rows = conn.execute(f"SELECT d.id FROM documents AS d WHERE {where} ORDER BY d.id", params).fetchall()
    return {int(row[0]) for row in rows}


@pytest.fixture(scope="module")
def conn(pg_db: str) -> Iterator[Conn]:
    connection = _connect(pg_db, DOCS)
    yield connection
    connection.close()


# --------------------------------------------------------------------------------------------------------------------
# the SQLite twin's tables


@pytest.mark.parametrize(("name", "operator", "value", "expected"), OPERATOR_TABLE)
def test_operator_table(conn: Conn, name: str, operator: Operator, value: Any, expected: set[int]) -> None:
    flt = _one(name, operator, value)
    assert _py_ids(DOCS, flt) == expected
    assert _sql_ids(conn, flt) == expected


@pytest.mark.parametrize("operator", [op for op in ALL_OPERATORS if op not in ("empty", "not empty")])
def test_null_value_skips_condition(conn: Conn, operator: Operator) -> None:
    flt = _one("lang", operator, None)
    assert _sql_ids(conn, flt) == ALL_IDS


@pytest.mark.parametrize(("logical", "conds", "expected"), COMBINATIONS)
def test_combinations(conn: Conn, logical: str, conds: list[tuple[str, Operator, Any]], expected: set[int]) -> None:
    flt = MetadataFilter(cast(Any, logical), tuple(MetadataCondition(name, op, value) for name, op, value in conds))
    assert _py_ids(DOCS, flt) == expected
    assert _sql_ids(conn, flt) == expected


@pytest.mark.parametrize(("flt", "expected"), NESTED)
def test_nested_groups(conn: Conn, flt: MetadataFilter, expected: set[int]) -> None:
    assert _py_ids(DOCS, flt) == expected
    assert _sql_ids(conn, flt) == expected


# --------------------------------------------------------------------------------------------------------------------
# PostgreSQL specifics


def test_number_text_is_postgres_numeric_text(pg_db: str) -> None:
    """The documented difference: exponent-form floats and -0.0 have PostgreSQL's plain-decimal text."""
    docs: dict[int, dict[str, object]] = {1: {"n": 1e20}, 2: {"n": 1e-07}, 3: {"n": -0.0}, 4: {"n": 2.5}, 5: {"n": 1.0}}
    connection = _connect(pg_db, docs)
    try:
        stored = dict(connection.execute("SELECT id, doc_metadata ->> 'n' FROM documents").fetchall())
        assert stored == {doc_id: pg_number_text(cast(float, meta["n"])) for doc_id, meta in docs.items()}
        assert stored == {1: "100000000000000000000", 2: "0.0000001", 3: "0.0", 4: "2.5", 5: "1.0"}
        # the text differs from the json.dumps literal the reference (and SQLite) uses ...
        contains_e = _one("n", "contains", "e")
        assert {i for i, m in docs.items() if matches_metadata(m, contains_e)} == {1, 2}
        assert _sql_ids(connection, contains_e) == set()
        assert _sql_ids(connection, _one("n", "is", "0.0000001")) == {2}
        assert _sql_ids(connection, _one("n", "start with", "-")) == set()
        # ... but the value does not: numeric comparisons agree with the reference on the raw metadata
        for flt in (_one("n", "=", 1e20), _one("n", "<", 1e-6), _one("n", "=", 0), _one("n", "≥", 1)):
            assert _sql_ids(connection, flt) == {i for i, m in docs.items() if matches_metadata(m, flt)}, flt
    finally:
        connection.close()


def test_numbers_out_of_float_range_never_raise(pg_db: str) -> None:
    """float8 refuses these; the SQL gives ±Infinity or 0 as Python's ``float()`` does, and never errors."""
    limit = 2**1024 - 2**970  # the least integer that float() rounds to infinity
    docs: dict[int, dict[str, object]] = {
        1: {"n": 10**400},
        2: {"n": -(10**400)},
        3: {"n": limit},
        4: {"n": limit - 1},
        5: {"n": "1e999"},
        6: {"n": "-1e999"},
        7: {"n": "1e-400"},
        8: {"n": "-1e-400"},
        9: {"n": "0e999999"},
        10: {"n": " 1e99999999999999999999 "},
        11: {"n": "1e-99999999999999999999"},
        12: {"n": "0.000000000000000000001e330"},
        13: {"n": "1000000000000000000000e-340"},
        14: {"n": "5e-324"},
        15: {"n": 2**63 + 5},
        16: {"n": "1.5e308"},
    }
    connection = _connect(pg_db, docs)
    try:
        for flt in (
            _one("n", ">", 1e308),
            _one("n", "<", -1e308),
            _one("n", "=", 0),
            _one("n", ">", 0),
            _one("n", "<", 0),
            _one("n", "≠", 0),
            _one("n", "≤", 1e-320),
            _one("n", "≥", 9.2e18),
        ):
            expected = _py_ids(docs, flt)
            assert _sql_ids(connection, flt) == expected, flt
        assert _sql_ids(connection, _one("n", ">", 1e308)) == {1, 3, 4, 5, 10, 12, 16}
        assert _sql_ids(connection, _one("n", "=", 0)) == {7, 8, 9, 11}
    finally:
        connection.close()


def test_json_whitespace_around_number_strings(pg_db: str) -> None:
    docs: dict[int, dict[str, object]] = {1: {"n": "\t 12\r\n"}, 2: {"n": "\v12"}, 3: {"n": "12 x"}, 4: {"n": "+12"}}
    connection = _connect(pg_db, docs)
    try:
        flt = _one("n", "=", 12)
        assert _py_ids(docs, flt) == {1}
        assert _sql_ids(connection, flt) == {1}
    finally:
        connection.close()


def test_nul_operands_are_decided_without_the_server(conn: Conn) -> None:
    """PostgreSQL text cannot hold NUL: no stored text contains one, and the operand is never sent."""
    for flt in (
        _one("title", "contains", "a\x00"),
        _one("title", "not contains", "\x00"),
        _one("title", "start with", "\x00"),
        _one("title", "end with", "x\x00"),
        _one("lang", "is", "en\x00"),
        _one("lang", "is not", "en\x00"),
        _one("lang", "in", ["en", "fr\x00"]),
        _one("lang", "in", ["fr\x00"]),
        _one("lang", "not in", ["en", "fr\x00"]),
        _one("lang", "not in", ["fr\x00"]),
    ):
        params: list[object] = []
        compile_metadata_filter(flt, "d", params)
        assert not any("\x00" in str(p) for p in params), flt
        assert _sql_ids(conn, flt) == _py_ids(DOCS, flt), flt


def test_values_are_bound_parameters(conn: Conn) -> None:
    hostile = "x'); DROP TABLE documents; --%s %%"
    flt = MetadataFilter(
        "or",
        (
            MetadataCondition(hostile, "contains", hostile),
            MetadataCondition("lang", "in", [hostile, "en"]),
            MetadataCondition("year", ">", 3),
            MetadataCondition(hostile, "empty", None),
        ),
    )
    params: list[object] = []
    sql = compile_metadata_filter(flt, "docs", params)
    assert hostile not in sql
    assert "DROP" not in sql
    assert "docs.doc_metadata" in sql
    assert hostile in params
    assert 3.0 in params
    assert _sql_ids(conn, flt) == _py_ids(DOCS, flt) == ALL_IDS  # the hostile key is missing everywhere: empty


@pytest.mark.parametrize("alias", ["", "d.x", "d; DROP TABLE t", "1d", "mf_kv", "mf_num"])
def test_compile_rejects_bad_alias(alias: str) -> None:
    with pytest.raises(ValueError):
        compile_metadata_filter(_one("a", "is", "b"), alias, [])


def test_unicode_and_escaped_keys(pg_db: str) -> None:
    docs: dict[int, dict[str, object]] = {1: {"é": "naïve 😀", "k\\b": 2.5, "sp ace": "文档"}, 2: {"é": "x"}}
    connection = _connect(pg_db, docs)
    try:
        flt = MetadataFilter(
            "and",
            (
                MetadataCondition("é", "contains", "ï"),
                MetadataCondition("k\\b", "is", "2.5"),
                MetadataCondition("sp ace", "end with", "档"),
                MetadataCondition("é", "start with", "naïve 😀"),
            ),
        )
        assert _py_ids(docs, flt) == {1}
        assert _sql_ids(connection, flt) == {1}
    finally:
        connection.close()


# --------------------------------------------------------------------------------------------------------------------
# randomized agreement between the SQL and the reference evaluator (the SQLite twin's generator)


@pytest.mark.parametrize("seed", [11, 22, 33, 44, 55, 66])
def test_sql_agrees_with_reference_evaluator(pg_db: str, seed: int) -> None:
    rng = random.Random(seed)
    docs = _rand_docs(rng, 60)
    connection = _connect(pg_db, docs)
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
    assert informative >= 40


@pytest.mark.parametrize("seed", [7, 8])
def test_single_conditions_agree_for_every_operator(pg_db: str, seed: int) -> None:
    rng = random.Random(seed)
    docs = _rand_docs(rng, 60)
    connection = _connect(pg_db, docs)
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


def test_generator_exercises_the_documented_difference() -> None:
    """The random documents do hold floats whose PostgreSQL text differs, so the agreement covers that path."""
    rng = random.Random(11)
    docs = _rand_docs(rng, 60)
    changed = [m for m in docs.values() if pg_view(m) != m]
    assert changed
