"""Schema inference and row validation (dust-behaviour.md §4.1, Dust's ``table_schema.rs``)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from alexandria.domain.tables import Cell, TableColumn, TableRow
from alexandria.errors import InvalidRequest
from alexandria.tables.errors import InvalidRows
from alexandria.tables.schema import (
    SchemaBuilder,
    datetime_string,
    format_float,
    from_rows,
    merge,
    render_value,
    schema_from_json,
    schema_to_json,
)
from alexandria.tables.values import dedupe_rows, parse_rows


def dt(epoch: int) -> dict[str, Any]:
    return {"type": "datetime", "epoch": epoch}


def test_dust_example_in_first_seen_order() -> None:
    rows: list[dict[str, Cell]] = [
        {"name": "John", "conversations": 129, "paying": True},
        {"name": "Mark", "conversations": 3, "paying": False},
        {"name": "Sally", "conversations": 456, "paying": True},
    ]
    assert schema_to_json(from_rows(rows)) == [
        {"name": "name", "value_type": "text", "possible_values": ['"John"', '"Mark"', '"Sally"']},
        {"name": "conversations", "value_type": "int", "possible_values": ["129", "3", "456"]},
        {"name": "paying", "value_type": "bool", "possible_values": ["TRUE", "FALSE"]},
    ]


def test_types_and_conflicts() -> None:
    schema = from_rows(
        [
            {"a": 1, "b": 1, "c": True, "d": dt(0), "e": 1.5, "f": "x"},
            {"a": 2.5, "b": "two", "c": 1, "d": "later", "e": 2, "f": None},
        ]
    )
    assert [(c.name, c.value_type) for c in schema] == [
        ("a", "float"),  # int + float
        ("b", "text"),  # int + text
        ("c", "text"),  # bool + int: any other mix is text
        ("d", "text"),  # datetime + text
        ("e", "float"),  # float + int
        ("f", "text"),
    ]
    # `1.0` parsed from JSON is a float; possible values keep the rendering of each value seen
    assert from_rows([{"x": 1.0}])[0] == TableColumn("x", "float", ("1.0",))
    assert schema[0].possible_values == ("1", "2.5")


def test_nulls_are_skipped_and_columns_appear_when_first_seen() -> None:
    schema = from_rows([{"a": None, "b": 1}, {"a": None}, {"c": "z", "a": 3}])
    assert [c.name for c in schema] == ["b", "c", "a"]
    assert from_rows([{"only_null": None}]) == ()
    assert from_rows([]) == ()


def test_possible_values_count_cap_is_permanent() -> None:
    rows: list[dict[str, Cell]] = [{"n": i} for i in range(16)]
    assert from_rows(rows)[0].possible_values == tuple(str(i) for i in range(16))
    rows.append({"n": 16})
    assert from_rows(rows)[0].possible_values is None
    # once given up, repeated known values do not bring the list back
    rows += [{"n": 0}, {"n": 1}]
    assert from_rows(rows)[0].possible_values is None
    # duplicates do not count
    assert from_rows([{"n": 1}] * 40)[0].possible_values == ("1",)


def test_possible_values_length_cap_in_bytes_is_permanent() -> None:
    ok = "x" * 30  # rendered with quotes: 32 bytes
    assert from_rows([{"s": ok}])[0].possible_values == (f'"{ok}"',)
    assert from_rows([{"s": ok + "x"}])[0].possible_values is None
    assert from_rows([{"s": "é" * 15}])[0].possible_values == ('"' + "é" * 15 + '"',)  # 32 bytes
    assert from_rows([{"s": "é" * 16}])[0].possible_values is None  # 34 bytes, 18 characters
    assert from_rows([{"s": "x" * 40}, {"s": "a"}])[0].possible_values is None


def test_rendering() -> None:
    assert render_value(True) == "TRUE" and render_value(False) == "FALSE"
    assert render_value(3) == "3" and render_value(-7) == "-7"
    assert render_value(1.2) == "1.2"
    assert render_value('say "hi"') == '"say "hi""'
    assert render_value(dt(1700000000123)) == "2023-11-14 22:13:20"
    assert datetime_string(-1) == "1969-12-31 23:59:59"
    assert datetime_string(0) == "1970-01-01 00:00:00"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1.0"),
        (1.2, "1.2"),
        (100.0, "100.0"),
        (-2.5, "-2.5"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e15, "1000000000000000.0"),
        (1e16, "1e16"),
        (1e20, "1e20"),
        (1.2345e33, "1.2345e33"),
        (1.2345678901234568e17, "1.2345678901234568e17"),
        (0.0001, "0.0001"),
        (0.00001, "0.00001"),
        (0.000001, "1e-6"),
        (1.5e-7, "1.5e-7"),
        (123.456, "123.456"),
    ],
)
def test_floats_render_like_rust(value: float, expected: str) -> None:
    assert format_float(value) == expected


def test_non_primitive_values_are_errors() -> None:
    with pytest.raises(InvalidRows, match="Field tags is not a primitive type on row 1"):
        from_rows([{"tags": "ok"}, {"tags": ["a"]}])
    with pytest.raises(InvalidRows, match="Field meta is not a primitive or datetime object"):
        from_rows([{"meta": {"a": 1}}])
    with pytest.raises(InvalidRows):
        from_rows([{"when": {"type": "datetime", "epoch": 1.5}}])
    with pytest.raises(InvalidRows):
        from_rows([{"when": {"type": "date", "epoch": 1}}])


def test_merge() -> None:
    a = (
        TableColumn("x", "int", ("1", "2")),
        TableColumn("y", "text", ('"a"',)),
        TableColumn("z", "bool", None),
    )
    b = (
        TableColumn("w", "datetime", ("2020-01-01 00:00:00",)),
        TableColumn("x", "float", ("2", "3.5")),
        TableColumn("y", "int", tuple(str(i) for i in range(16))),
        TableColumn("z", "bool", ("TRUE",)),
    )
    assert merge(a, b) == (
        TableColumn("x", "float", ("1", "2", "3.5")),
        TableColumn("y", "text", None),  # 17 values
        TableColumn("z", "bool", None),  # given up stays given up
        TableColumn("w", "datetime", ("2020-01-01 00:00:00",)),
    )
    assert merge((TableColumn("e", "int", ()),), (TableColumn("e", "int", ()),)) == (TableColumn("e", "int", None),)


def test_builder_continuation_equals_inference_over_everything() -> None:
    rng = random.Random(3)
    pool: list[Cell] = [None, True, False, 0, 1, 2, 2.5, -1.0, "a", "b", "x" * 40, dt(0), dt(86_400_000)]
    for _ in range(300):
        rows: list[dict[str, Cell]] = [
            {k: rng.choice(pool) for k in rng.sample(["a", "b", "c", "d"], rng.randint(0, 4))}
            for _ in range(rng.randint(0, 40))
        ]
        for i in range(rng.randint(0, 30)):
            rows.append({"c": i})
        cut = rng.randint(0, len(rows))
        continued = SchemaBuilder(from_rows(rows[:cut])).add_rows(rows[cut:]).columns()
        assert continued == from_rows(rows)


def test_schema_json_round_trip() -> None:
    schema = from_rows([{"a": 1, "b": "x" * 50, "c": dt(0)}])
    assert schema_from_json(schema_to_json(schema)) == schema
    assert schema_to_json(None) is None and schema_from_json(None) is None
    assert schema_to_json(schema)[1] == {"name": "b", "value_type": "text", "possible_values": None}  # type: ignore[index]


# --- row validation ----------------------------------------------------------------------------------------------
def test_parse_rows_normalises_values() -> None:
    rows = parse_rows(
        [
            {"row_id": "1", "value": {"a": 1, "b": None, "c": {"type": "datetime", "epoch": 5, "extra": 1}}},
            {"row_id": "2", "value": {"c": {"type": "datetime", "epoch": 5, "string_value": "then"}}},
            {"row_id": "3", "value": {"big": 2**70, "f": 1.5, "t": True, "s": ""}},
        ]
    )
    assert rows[0] == TableRow("1", {"a": 1, "b": None, "c": {"type": "datetime", "epoch": 5}})
    assert rows[1].value["c"] == {"type": "datetime", "epoch": 5, "string_value": "then"}
    assert rows[2].value == {"big": float(2**70), "f": 1.5, "t": True, "s": ""}


@pytest.mark.parametrize(
    "value",
    [
        {"Name": 1},
        {"a-b": 1},
        {"": 1},
        {"é": 1},
        {"a b": 1},
    ],
)
def test_keys_must_be_lowercase_alphanumeric(value: dict[str, Any]) -> None:
    with pytest.raises(InvalidRows, match="keys must be lowercase alphanumeric"):
        parse_rows([{"row_id": "1", "value": value}])


@pytest.mark.parametrize(
    "cell",
    [
        [1, 2],
        {"a": 1},
        {"type": "datetime", "epoch": 1.5},
        {"type": "datetime", "epoch": True},
        {"type": "datetime", "epoch": 1, "string_value": 3},
        {"type": "datetime", "epoch": 1, "string_value": None},
        {"type": "datetime", "epoch": 10**18},
        float("nan"),
        float("inf"),
        10**400,
    ],
)
def test_bad_values_are_refused(cell: Any) -> None:
    with pytest.raises(InvalidRows):
        parse_rows([{"row_id": "1", "value": {"a": cell}}])


@pytest.mark.parametrize(
    "raw",
    [
        {"row_id": "1"},
        [{"value": {}}],
        [{"row_id": 1, "value": {}}],
        [{"row_id": "1", "value": [1]}],
        ["row"],
    ],
)
def test_row_shapes_are_refused(raw: Any) -> None:
    with pytest.raises(InvalidRequest):
        parse_rows(raw)


def test_dedupe_keeps_first_position_and_last_value() -> None:
    rows = [TableRow("a", {"v": 1}), TableRow("b", {"v": 2}), TableRow("a", {"v": 3})]
    assert dedupe_rows(rows) == [TableRow("a", {"v": 3}), TableRow("b", {"v": 2})]
    unique = [TableRow("a", {})]
    assert dedupe_rows(unique) is unique
