"""Compile a Dify metadata filter to a SQLite boolean expression over ``documents.doc_metadata``.

The semantics are those of :mod:`alexandria.domain.metadata_filter`. :func:`matches_metadata` there is the reference,
and randomized tests check that the SQL agrees with it. Implementation notes:

* A key is found with ``json_each(doc_metadata)`` and ``key = ?``. That compares the decoded key exactly. A JSON path
  such as ``$."é"`` would not: SQLite 3.40 compares path labels with the raw, possibly ``\\u``-escaped, key text that
  ``json.dumps`` writes. Every condition except ``empty`` is ``EXISTS (SELECT 1 FROM json_each(...) WHERE key = ? AND
  <predicate on the value>)``. So a missing key never matches, and neither does a JSON null: its text and number are
  NULL. That is Dify's SQL-NULL behaviour, for the negative operators too.
* The text ``s`` of a number is its JSON literal, ``doc_metadata -> fullkey``: SQLite keeps the literal, so ``2.5``
  stays ``2.5``. ``CAST(REAL AS TEXT)`` would reformat it.
* The number ``f`` of a string exists only if the string is a strict JSON number literal (``json_valid`` +
  ``json_type``). Non-numeric strings give NULL instead of an error. ``CASE`` guarantees ``json_type`` only sees valid
  JSON.
* Substring, prefix and suffix tests use ``instr``/``substr`` with bound operands and lengths. They are case-sensitive
  like PostgreSQL's LIKE, where SQLite's LIKE folds ASCII case and treats ``%``/``_`` specially.
* Every value is a bound parameter. The only text put into the SQL is ``doc_alias``, which must be a plain identifier.
"""

from __future__ import annotations

import json

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

_KV = "mf_kv"  # alias of the json_each row inside each condition's subquery


def _text_expr(column: str) -> str:
    """``s``: the stored value as text (NULL for null, arrays, objects)."""
    return (
        f"(CASE {_KV}.type WHEN 'text' THEN {_KV}.value "
        f"WHEN 'integer' THEN ({column} -> {_KV}.fullkey) WHEN 'real' THEN ({column} -> {_KV}.fullkey) "
        f"WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END)"
    )


def _number_expr() -> str:
    """``f``: the stored value as REAL (NULL unless a number or a strict JSON-number string)."""
    return (
        f"(CASE {_KV}.type WHEN 'integer' THEN CAST({_KV}.value AS REAL) WHEN 'real' THEN {_KV}.value "
        f"WHEN 'text' THEN (CASE WHEN json_valid({_KV}.value) THEN (CASE json_type({_KV}.value) "
        f"WHEN 'integer' THEN CAST(json_extract({_KV}.value, '$') AS REAL) "
        f"WHEN 'real' THEN CAST(json_extract({_KV}.value, '$') AS REAL) END) END) END)"
    )


def _predicate(cond: MetadataCondition, column: str, params: list[object]) -> str:
    """The test on the json_each row of ``cond.name``. Appends its parameters to ``params``."""
    op = cond.operator
    s = _text_expr(column)
    if op in STRING_OPERATORS:
        needle = condition_text(cond)
        if not needle:  # LIKE '%%': any non-NULL text; NOT LIKE '%%': nothing
            return "0" if op == "not contains" else f"{s} IS NOT NULL"
        if op == "contains":
            params.append(needle)
            return f"instr({s}, ?) > 0"
        if op == "not contains":
            params.append(needle)
            return f"instr({s}, ?) = 0"
        params.extend((len(needle), needle))
        if op == "start with":
            return f"substr({s}, 1, ?) = ?"
        return f"substr({s}, -?) = ?"
    if op in MEMBERSHIP_OPERATORS:
        params.append(json.dumps(condition_list(cond)))
        negate = "NOT " if op == "not in" else ""
        return f"{s} {negate}IN (SELECT value FROM json_each(?))"
    if op in ("is", "=", "is not", "≠"):
        sql_op = "=" if op in ("is", "=") else "<>"
        if isinstance(cond.value, str):
            params.append(cond.value)
            return f"{s} {sql_op} ?"
        params.append(condition_number(cond))
        return f"{_number_expr()} {sql_op} ?"
    params.append(condition_number(cond))
    return f"{_number_expr()} {ORDERING_OPERATORS[op]} ?"


def _condition_sql(cond: MetadataCondition, column: str, params: list[object]) -> str:
    lookup = f"SELECT 1 FROM json_each({column}) AS {_KV} WHERE {_KV}.key = ?"
    if cond.operator == "empty":
        params.append(cond.name)
        return f"(NOT EXISTS ({lookup}))"
    if cond.operator == "not empty":
        params.append(cond.name)
        return f"(EXISTS ({lookup}))"
    params.append(cond.name)
    predicate = _predicate(cond, column, params)
    return f"(EXISTS ({lookup} AND ({predicate})))"


def compile_metadata_filter(flt: MetadataFilter, doc_alias: str, params: list[object]) -> str:
    """A SQL boolean expression over ``{doc_alias}.doc_metadata`` that is true when the document passes ``flt``
    (see :func:`alexandria.storage.metadata_sql.compile_conditions`)."""
    return compile_conditions(flt, doc_alias, params, frozenset({_KV}), _condition_sql)
