"""What both engines' Dify metadata-filter compilers share: the filter's shape (which conditions count, how they are
joined), the rules that need no SQL, and the alias check. Each engine compiles one condition
(``storage/sqlite/metadata_sql.py``, ``storage/postgres/metadata_sql.py``); the semantics are
:mod:`alexandria.domain.metadata_filter`'s."""

from __future__ import annotations

import re
from collections.abc import Callable

from alexandria.domain.metadata_filter import (
    MEMBERSHIP_OPERATORS,
    MetadataCondition,
    MetadataFilter,
    active_conditions,
    condition_list,
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: compiles one condition over a document's ``doc_metadata`` column, appending its parameters
ConditionSql = Callable[[MetadataCondition, str, list[object]], str]


def compile_conditions(
    flt: MetadataFilter, doc_alias: str, params: list[object], reserved: frozenset[str], condition_sql: ConditionSql
) -> str:
    """A SQL boolean expression over ``{doc_alias}.doc_metadata`` that is true when the document passes ``flt``.
    Bound values are appended to ``params`` in placeholder order; the expression can be ANDed into a WHERE clause."""
    if not _IDENTIFIER.fullmatch(doc_alias) or doc_alias in reserved:
        raise ValueError(f"doc_alias must be a plain SQL identifier other than {sorted(reserved)}, got {doc_alias!r}")
    return _group(flt, f"{doc_alias}.doc_metadata", params, condition_sql)


def _group(flt: MetadataFilter, column: str, params: list[object], condition_sql: ConditionSql) -> str:
    """One level of the filter (a nested group recursively), conditions joined by its logical operator."""
    conditions = active_conditions(flt)
    if not conditions:
        return "(TRUE)"
    joiner = " AND " if flt.logical_operator == "and" else " OR "
    parts = (
        _group(c, column, params, condition_sql)
        if isinstance(c, MetadataFilter)
        else _condition(c, column, params, condition_sql)
        for c in conditions
    )
    return "(" + joiner.join(parts) + ")"


def _condition(cond: MetadataCondition, column: str, params: list[object], condition_sql: ConditionSql) -> str:
    if cond.operator in MEMBERSHIP_OPERATORS and not condition_list(cond):
        return "TRUE" if cond.operator == "not in" else "FALSE"  # Dify: literal(condition == "not in")
    return condition_sql(cond, column, params)
