"""Compile a Dify metadata filter to a PostgreSQL boolean expression over the jsonb ``documents.doc_metadata``.

The PostgreSQL twin of :mod:`alexandria.storage.sqlite.metadata_sql`, with the semantics of
:mod:`alexandria.domain.metadata_filter`: :func:`matches_metadata` there is the reference, and randomized tests against
a real server check that the SQL agrees with it. Implementation notes:

* Each condition except ``empty``/``not empty`` is ``EXISTS (SELECT 1 FROM (SELECT doc_metadata -> %s AS v) AS mf_kv
  WHERE <predicate on v>)``. ``->`` with a text key gives SQL NULL for a missing key and the jsonb ``null`` for a JSON
  null, whose text and number are NULL: neither ever matches, for the negative operators too (Dify's SQL NULL).
  ``empty`` is ``doc_metadata -> name IS NULL``, as in Dify: only a missing key is empty.
* ``s`` (the text) is ``v #>> '{}'`` for strings, numbers and booleans, NULL otherwise (null, arrays, objects).
  **The one deliberate difference from the reference**: jsonb stores a number as ``numeric``, whose text is plain
  decimal, so a float that ``json.dumps`` writes in exponent form (``1e+20``, ``1e-07``) reads back as
  ``100000000000000000000`` / ``0.0000001``, and ``-0.0`` as ``0.0``. jsonb cannot tell the float ``1e+16`` from the
  integer ``10000000000000000``, so the literal cannot be rebuilt. This is what Dify itself sees (``->>`` on JSONB);
  only the text operators see it, a number's value ``f`` is the same.
* ``f`` (the number) exists for numbers and for strings that are strict JSON number literals (a regular expression,
  as in the reference). It is computed without ever raising: ``pg_input_is_valid(t, 'float8')`` guards the cast, and a
  literal out of the float range gives ±Infinity or 0, as Python's ``float()`` does (from the sign of its decimal
  order, computed from the literal's digits).
* Substring, prefix and suffix tests use ``strpos``/``left``/``right`` with bound operands: literal and case-sensitive
  (no LIKE, so ``%`` and ``_`` are plain characters). Text equality is byte equality (deterministic collation).
* PostgreSQL text cannot hold NUL, so no stored text contains one: an operand with NUL is decided in Python (it can
  match nothing) rather than sent to the server, which would refuse it.
* Every value is a bound parameter (``%s``). The only text put into the SQL is ``doc_alias``, which must be a plain
  identifier.
"""

from __future__ import annotations

from alexandria.domain.metadata_filter import (
    MEMBERSHIP_OPERATORS,
    ORDERING_OPERATORS,
    STRING_OPERATORS,
    MetadataCondition,
    MetadataFilter,
    condition_list,
    condition_number,
    condition_text,
)
from alexandria.storage.metadata_sql import compile_conditions

__all__ = ["compile_metadata_filter"]

_KV = "mf_kv"  # alias of the looked-up value inside each condition's subquery
_NUM = "mf_num"  # alias of the parsed number literal in the out-of-range fallback
_RESERVED = frozenset({_KV, _NUM})

# A strict JSON number literal with optional JSON whitespace around it (the reference's ``_JSON_NUMBER``), in
# PostgreSQL ARE syntax; the groups of the second are the sign, the integer digits, the fraction and the exponent.
_NUMBER_RE = r"'^[ \t\n\r]*-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?[ \t\n\r]*$'"
_NUMBER_PARTS_RE = r"'^[ \t\n\r]*(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?[ \t\n\r]*$'"

_V = f"{_KV}.v"
# ``s``: the stored value as text (NULL for null, arrays, objects, missing keys).
_S = f"(CASE WHEN jsonb_typeof({_V}) IN ('string', 'number', 'boolean') THEN {_V} #>> '{{}}' END)"
# The text a number is read from: a string, or a number's numeric text.
_T = f"(CASE WHEN jsonb_typeof({_V}) IN ('string', 'number') THEN {_V} #>> '{{}}' END)"


def _out_of_range(t: str) -> str:
    """The float of a strict number literal ``t`` that float8 refuses: ±Infinity when its decimal order is >= 0
    (overflow), else 0 (underflow), as Python's ``float()`` rounds it. Never raises."""
    m = f"{_NUM}.m"
    frac = f"coalesce({m}[3], '')"
    exp = f"coalesce({m}[4], '0')"
    exp_digits = f"ltrim({exp}, '+-0')"
    exp_sign = f"(CASE WHEN left({exp}, 1) = '-' THEN -1 ELSE 1 END)"
    # decimal order of the mantissa: digits before the point minus one, or minus the zeros after "0." minus one
    lead = f"(CASE WHEN {m}[2] <> '0' THEN length({m}[2]) - 1 ELSE length(ltrim({frac}, '0')) - length({frac}) - 1 END)"
    # its decimal order, or just the exponent's sign when the exponent is too long to be outweighed by the digits
    order = (
        f"(CASE WHEN length({exp_digits}) > 15 THEN {exp_sign} "
        f"ELSE {lead} + {exp_sign} * coalesce(nullif({exp_digits}, '')::bigint, 0) END)"
    )
    return (
        f"(SELECT CASE WHEN ltrim({m}[2] || {frac}, '0') = '' THEN 0::float8 "
        f"WHEN {order} >= 0 THEN (CASE WHEN {m}[1] = '-' THEN '-Infinity'::float8 ELSE 'Infinity'::float8 END) "
        f"ELSE 0::float8 END "
        f"FROM (SELECT regexp_match({t}, {_NUMBER_PARTS_RE}) AS m) AS {_NUM})"
    )


# ``f``: the stored value as float8 (NULL unless a number or a strict JSON-number string).
_F = (
    f"(CASE WHEN {_T} ~ {_NUMBER_RE} THEN (CASE WHEN pg_input_is_valid({_T}, 'float8') THEN {_T}::float8 "
    f"ELSE {_out_of_range(_T)} END) END)"
)


def _predicate(cond: MetadataCondition, params: list[object]) -> str:
    """The test on ``mf_kv.v``, the value of ``cond.name``. Appends its parameters to ``params``."""
    op = cond.operator
    if op in STRING_OPERATORS:
        needle = condition_text(cond)
        if not needle:  # LIKE '%%': any non-NULL text; NOT LIKE '%%': nothing
            return "FALSE" if op == "not contains" else f"{_S} IS NOT NULL"
        if "\x00" in needle:  # no stored text holds NUL
            return f"{_S} IS NOT NULL" if op == "not contains" else "FALSE"
        if op == "contains":
            params.append(needle)
            return f"strpos({_S}, %s::text) > 0"
        if op == "not contains":
            params.append(needle)
            return f"strpos({_S}, %s::text) = 0"
        params.extend((len(needle), needle))
        if op == "start with":
            return f"left({_S}, %s::integer) = %s::text"
        return f"right({_S}, %s::integer) = %s::text"
    if op in MEMBERSHIP_OPERATORS:
        values = [item for item in condition_list(cond) if "\x00" not in item]
        if not values:  # every item held NUL (the empty list itself is handled by the caller)
            return f"{_S} IS NOT NULL" if op == "not in" else "FALSE"
        params.append(values)
        return f"{_S} <> ALL(%s::text[])" if op == "not in" else f"{_S} = ANY(%s::text[])"
    if op in ("is", "=", "is not", "≠"):
        equal = op in ("is", "=")
        if isinstance(cond.value, str):
            if "\x00" in cond.value:
                return "FALSE" if equal else f"{_S} IS NOT NULL"
            params.append(cond.value)
            return f"{_S} {'=' if equal else '<>'} %s::text"
        params.append(condition_number(cond))
        return f"{_F} {'=' if equal else '<>'} %s::float8"
    params.append(condition_number(cond))
    return f"{_F} {ORDERING_OPERATORS[op]} %s::float8"


def _condition_sql(cond: MetadataCondition, column: str, params: list[object]) -> str:
    if cond.operator in ("empty", "not empty"):
        params.append(cond.name)
        return f"(({column} -> %s::text) IS {'' if cond.operator == 'empty' else 'NOT '}NULL)"
    params.append(cond.name)
    predicate = _predicate(cond, params)
    return f"(EXISTS (SELECT 1 FROM (SELECT {column} -> %s::text AS v) AS {_KV} WHERE {predicate}))"


def compile_metadata_filter(flt: MetadataFilter, doc_alias: str, params: list[object]) -> str:
    """A SQL boolean expression over ``{doc_alias}.doc_metadata`` that is true when the document passes ``flt``
    (see :func:`alexandria.storage.metadata_sql.compile_conditions`)."""
    return compile_conditions(flt, doc_alias, params, _RESERVED, _condition_sql)
