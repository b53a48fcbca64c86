"""What every JSON value a client sends must satisfy before any dialect reads it, checked in one place for both
dialects (request bodies and JSON carried in form fields):

- it is JSON (RFC 8259: no ``NaN``/``Infinity``), UTF-8;
- it nests at most ``MAX_JSON_DEPTH`` arrays/objects deep (deeper values would exhaust recursion further in);
- its integers fit a signed 64-bit integer and its numbers are finite (what every store can hold);
- its strings hold storable Unicode text: a lone UTF-16 surrogate (``"\\ud800"`` without its pair) cannot be encoded
  as UTF-8, and PostgreSQL's text cannot hold NUL (``"\\u0000"``), so both are refused (on every store alike) rather
  than silently replaced.

The request target obeys the text rule too (``target_error``: a NUL in the path or the query string; percent-decoding
already replaces what is not UTF-8, so no surrogate can come from there).

Each failure raises ``BadJSON``; each dialect renders it in its own envelope (400).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from alexandria.domain.limits import INT64_MAX, INT64_MIN, in_int64

MAX_JSON_DEPTH = 128
"""The deepest nesting of arrays and objects accepted (the top-level value is depth 1). A Dust ``section`` level
takes two (its object and its ``sections`` array), so section trees up to 63 levels deep fit."""

_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_INNERMOST_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
# A number that may not fit has 19+ digits (an integer beyond int64, a float of 309+ digits) or an exponent of 3+
# digits: found as runs in the body mapped to 0 (digits), e (exponents), + (signs) and space; only a body holding one
# is parsed with the (slower) range-checking hooks.
_NUMBER_SHAPES = bytes(48 if 48 <= c <= 57 else 101 if c in b"eE" else 43 if c in b"+-" else 32 for c in range(256))
_BIG_NUMBER_SHAPES = (b"0" * 19, b"e000", b"e+000")
_MAX_INT_DIGITS = len(str(INT64_MIN))


class BadJSON(ValueError):
    """A JSON value refused at the edge; ``malformed`` when it is not JSON at all (rather than JSON out of bounds)."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.malformed = malformed


def _parse_int(text: str) -> int:
    value = int(text) if len(text) <= _MAX_INT_DIGITS else None
    if value is None or not in_int64(value):
        raise BadJSON(f"integer {text[:40]} is out of range (a signed 64-bit integer: {INT64_MIN}..{INT64_MAX}).")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadJSON(f"number {text[:40]} is out of range.")
    return value


def _parse_constant(text: str) -> Any:
    raise BadJSON(f"malformed JSON: {text} is not a JSON value.", malformed=True)


def parse_json(raw: bytes | str) -> Any:
    """The JSON value of ``raw`` (UTF-8 if bytes), checked as the module says; ``BadJSON`` otherwise."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
        shapes = data.translate(_NUMBER_SHAPES)
        if any(shape in shapes for shape in _BIG_NUMBER_SHAPES):
            value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
        else:
            value = json.loads(text, parse_constant=_parse_constant)
    except RecursionError as exc:
        raise BadJSON(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadJSON(f"malformed JSON: {exc}", malformed=True) from exc
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH and _too_deep(data):
        raise BadJSON(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
    # decoded UTF-8 holds no surrogate, and JSON no raw NUL: only escapes (or a str given as such) can bring them
    if _UNSTORABLE_ESCAPE.search(data) is not None or (isinstance(raw, str) and _UNSTORABLE.search(raw) is not None):
        _check_strings(value)
    return value


def _too_deep(data: bytes) -> bool:
    """Whether well-formed JSON ``data`` nests deeper than ``MAX_JSON_DEPTH``. First with the brackets of its strings
    counted too: when those still pair up within the bound, the real nesting (never deeper) does too; otherwise
    again without them (strings removed), exactly."""
    if _nests_within(data.translate(None, _NOT_BRACKETS)):
        return False
    return not _nests_within(_STRING.sub(b"", data).translate(None, _NOT_BRACKETS))


def _nests_within(brackets: bytes) -> bool:
    """Whether ``brackets`` pair up, nested at most ``MAX_JSON_DEPTH`` deep: innermost pairs removed once per level
    (each pass in C; a typical body takes a few)."""
    for _ in range(MAX_JSON_DEPTH):
        if not brackets:
            return True
        brackets = _INNERMOST_PAIR.sub(b"", brackets)
    return not brackets


def _check_strings(value: Any) -> None:
    """Every key and string of ``value`` (without recursion; its depth is already bounded) against the text rule."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            _check_text(node)
        elif isinstance(node, dict):
            for key in node:
                _check_text(key)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _check_text(text: str) -> None:
    """Raises on NUL or a lone surrogate (a valid pair was already joined into one code point by the decoder)."""
    found = _UNSTORABLE.search(text)
    if found is not None:
        raise BadJSON(f"string {unstorable(found.group(), found.start())}")


def unstorable(char: str, offset: int) -> str:
    if char == "\x00":
        return f"contains a NUL character (U+0000 at offset {offset}), which cannot be stored."
    return f"contains a lone UTF-16 surrogate (U+{ord(char):04X} at offset {offset}), which is not Unicode text."


def text_error(text: str) -> str | None:
    """Why text a client sent outside JSON (a form field, a file name, an uploaded CSV) breaks the text rule."""
    found = _UNSTORABLE.search(text)
    return None if found is None else unstorable(found.group(), found.start())


def target_error(path: str, query_string: bytes) -> str | None:
    """Why a request target breaks the text rule (None if it does not)."""
    if "\x00" in path:
        return f"The path {unstorable(chr(0), path.index(chr(0)))}"
    if b"%00" in query_string or b"\x00" in query_string:
        return "The query string contains a NUL character (%00), which cannot be stored."
    return None
