"""The edge's JSON rules (``alexandria.api.edge.parse_json``): exact bounds, and no false alarm from look-alike text."""

from __future__ import annotations

import json

import pytest

from alexandria.api.edge import MAX_JSON_DEPTH, BadJSON, parse_json
from alexandria.domain.limits import INT64_MAX, INT64_MIN


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def refused(raw: str | bytes, *, malformed: bool = False) -> str:
    with pytest.raises(BadJSON) as caught:
        parse_json(raw)
    assert caught.value.malformed is malformed
    return caught.value.message


def test_depth_bound_is_exact() -> None:
    assert parse_json(nested(MAX_JSON_DEPTH)) == json.loads(nested(MAX_JSON_DEPTH))
    assert parse_json('{"a": ' + nested(MAX_JSON_DEPTH - 1) + "}")["a"] == json.loads(nested(MAX_JSON_DEPTH - 1))
    assert str(MAX_JSON_DEPTH) in refused(nested(MAX_JSON_DEPTH + 1))
    assert str(MAX_JSON_DEPTH) in refused('{"a": ' + nested(MAX_JSON_DEPTH) + "}")
    assert str(MAX_JSON_DEPTH) in refused(nested(100_000))  # beyond the parser's own recursion
    assert str(MAX_JSON_DEPTH) in refused("[" * 100_000, malformed=False)


def test_brackets_inside_strings_do_not_count() -> None:
    for text in ("[" * 500, "]" * 500, "[}" * 300, "]][[" * 300, '\\"[' * 300):
        value = parse_json(json.dumps({"text": text, "list": [[1]] * 200}))
        assert value["text"] == json.loads(json.dumps(text))
    # ... nor hide real nesting
    assert str(MAX_JSON_DEPTH) in refused(nested(MAX_JSON_DEPTH + 1, json.dumps("]" * 300)))
    assert str(MAX_JSON_DEPTH) in refused(nested(MAX_JSON_DEPTH + 1, json.dumps("][" * 300)))


@pytest.mark.parametrize("value", [INT64_MAX, INT64_MIN, 0, -1, 10**18, 1234567890123456789])
def test_integers_in_range(value: int) -> None:
    assert parse_json(f'{{"n": {value}}}') == {"n": value}


@pytest.mark.parametrize("value", [str(INT64_MAX + 1), str(INT64_MIN - 1), str(2**70), "9" * 4400])
def test_integers_out_of_range(value: str) -> None:
    assert "out of range" in refused(f'{{"n": {value}}}')


def test_numbers() -> None:
    assert parse_json("[1e308, 1.5e-400, 1E+0002, 123456789012345678901234.5]") == [
        1e308,
        0.0,
        100.0,
        1.2345678901234568e23,
    ]
    assert parse_json('"12345678901234567890123"') == "12345678901234567890123"  # digits in a string are text
    for raw in ("1e309", "[-1e400]", '{"x": ' + "9" * 400 + ".0}"):
        assert "out of range" in refused(raw)
    for raw in ("NaN", "[Infinity]", '{"x": -Infinity}'):
        refused(raw, malformed=True)


def test_text() -> None:
    assert parse_json('"\\ud83d\\ude00"') == "\U0001f600"
    assert parse_json('"\\\\ud800 and \\\\u0000"') == "\\ud800 and \\u0000"  # an escaped backslash: plain text
    for raw in ('"a\\ud800b"', '["\\udfff"]', '{"k\\u0000": 1}', '{"a": ["x", {"b": "\\uDBFF"}]}', '"\\u0000"'):
        message = refused(raw)
        assert "surrogate" in message or "NUL" in message
    assert "surrogate" in refused('{"data": "a\ud800"}')  # a str (a form field) decoded with a lone surrogate


def test_encoding() -> None:
    assert parse_json(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # a UTF-8 BOM
    refused(b'{"a": "\xff"}', malformed=True)
    refused(b'{"a": 1', malformed=True)
    refused('{"a": "\\ud800"}'.encode("utf-16"), malformed=True)  # JSON over HTTP is UTF-8
