"""Dify ``metadata_filtering_conditions``: typed filter tree, request parsing, reference evaluator.

Dify accepts the filter in ``retrieval_model.metadata_filtering_conditions`` on
``POST /v1/datasets/{id}/retrieve``. It is
``{"logical_operator": "and"|"or", "conditions": [{"name", "comparison_operator", "value"}]}``. The conditions are
compared with each document's ``doc_metadata``, a JSON object that maps a metadata field name to a string, a number,
or null. Time fields hold Unix seconds as numbers.

This module holds the typed tree, :func:`parse_metadata_filter` for the request JSON, and :func:`matches_metadata`. The
last is a pure-Python evaluator. It is the reference for the SQL that
:func:`alexandria.storage.sqlite.metadata_sql.compile_metadata_filter` builds, and the two must agree on every input.

Where the semantics come from
=============================
Dify: ``api/core/rag/entities/metadata_entities.py`` (``SupportedComparisonOperator``, ``Condition``,
``MetadataFilteringCondition``). Also ``api/core/rag/retrieval/dataset_retrieval.py``: ``get_metadata_filter_condition``
and ``process_metadata_filter_func`` (``filter_documents`` in newer versions). Dify runs that SQLAlchemy code on
PostgreSQL, where ``doc_metadata`` is JSONB. Below, ``s`` is ``doc_metadata ->> name`` (``.as_string()``): the text of
the value, SQL NULL when the key is missing or the value is JSON null. ``f`` is ``CAST(s AS FLOAT)`` (``.as_float()``).
SQL NULL logic then decides the rest: a comparison with NULL is not true, so the document does not match.

Our definitions of ``s`` and ``f`` for a stored value:

* string: ``s`` is the string. ``f`` is its number when the string is exactly a JSON number literal, optionally
  surrounded by JSON whitespace (``"12"``, ``" 1.5e3 "``); otherwise ``f`` is NULL.
* number: ``s`` is its JSON literal, as ``json.dumps`` writes it (``5``, ``2.5``, ``1e+20``). ``f`` is its value.
* true/false: ``s`` is ``"true"``/``"false"``. ``f`` is NULL.
* null, missing key, array, object: both are NULL.

Conditions:

* A condition whose ``value`` is None is dropped, except ``empty``/``not empty``. Dify:
  ``if value is None and condition not in ("empty", "not empty"): return filters``. The condition is *dropped*, not made
  true: under ``or`` it does not match everything. With no conditions left, every document matches.
  ``filter_documents``/``get_metadata_filter_condition`` add a WHERE clause only ``if filters``.
* Combination: ``and_(*filters)`` only when ``logical_operator == "and"``, otherwise ``or_(*filters)``. The pydantic
  default is ``"and"`` when the key is absent. An explicit ``"logical_operator": null`` validates to None, which Dify
  combines with OR. We do the same.
* ``contains`` / ``not contains`` / ``start with`` / ``end with``: Dify uses
  ``s LIKE '%' || escape_like_pattern(str(value)) || '%' ESCAPE '\\'`` (NOT LIKE, prefix and suffix forms). The value is
  escaped, so this is a literal substring/prefix/suffix test. PostgreSQL LIKE is case-sensitive, and so is our test:
  ``instr``/``substr`` in SQLite, ``in``/``startswith``/``endswith`` in Python. SQLite's LIKE folds ASCII case, so it is
  not used. A number value is compared as ``str(value)``. NULL ``s`` never matches, and that includes ``not contains``.
  An empty value matches every non-NULL ``s`` (``LIKE '%%'``), and ``not contains ""`` matches nothing.
* ``is`` / ``=``: a str value gives ``s = value`` (text); an int/float value gives ``f = value`` (float). Dify:
  ``case str(): json_field == value`` / ``case int() | float(): ...as_float() == value``.
* ``is not`` / ``≠``: ``s <> value`` or ``f <> value``. A missing key or null never matches (SQL NULL).
* ``empty`` / ``not empty``: Dify tests ``doc_metadata -> name IS NULL`` / ``IS NOT NULL``. That is JSON ``->``, not
  ``->>``, and ``->`` of a JSON null is the JSON value ``null``, not SQL NULL. So ``empty`` means only *the key is
  missing*. A key holding null or ``""`` is "not empty". The value is ignored.
* ``in`` / ``not in``: a str value is split on commas, with each item stripped and empty items dropped. A list is used
  as is. A number becomes ``[str(value)]``. Dify: ``[v.strip() for v in value.split(",") if v.strip()]`` /
  ``[str(v) for v in value ...]``. An empty list gives ``literal(condition == "not in")``: ``in`` matches nothing and
  ``not in`` matches every document, missing keys included. Otherwise ``s IN (...)`` / ``s NOT IN (...)`` compare text,
  and NULL ``s`` matches neither.
* ``>``/``after``, ``<``/``before``, ``≥``, ``≤``: ``f`` compared with ``float(value)``. A NULL ``f`` (missing, null,
  non-numeric) does not match.

Deliberate deviations (Dify would answer 500 or behave oddly; we refuse early or define the edge):

* PostgreSQL's ``CAST(s AS FLOAT)`` raises on a non-numeric ``s``, and the whole request fails. Here that document just
  does not match. A numeric string counts only in strict JSON number syntax: PostgreSQL's ``'+1'``, ``'.5'``,
  ``'Infinity'`` are not numbers here.
* PostgreSQL JSONB prints numbers in its own normal form (``1e+20`` becomes ``100000000000000000000``). We keep the
  ``json.dumps`` literal, so the two differ only for exponent forms.
* Refused with :class:`MetadataFilterError` (HTTP 400 ``invalid_param``): boolean values; non-finite numbers; lists
  for operators other than ``in``/``not in`` (and ``empty``/``not empty``, which ignore the value). Dify would use
  the Python repr of the list, or skip the condition;
  lists that hold anything other than strings (as pydantic's ``Sequence[str]`` does); and a non-numeric string for
  ``>``, ``<``, ``≥``, ``≤``, ``before``, ``after`` (PostgreSQL would fail the cast). A numeric string there, such as
  ``"1700000000"``, is accepted as its number, as PostgreSQL's cast of the bound parameter would do.
* Names that contain ``"`` or NUL are refused. The SQLite JSON path that reads a number's literal cannot address such
  a key, so the SQL and this evaluator could not agree.
* ``doc_metadata`` must be strict JSON (``json.dumps(..., allow_nan=False)``): SQLite's ``json_each`` raises on
  ``NaN``/``Infinity``.
* Arrays and objects stored as values have no text form, so only ``empty``/``not empty`` see them. In PostgreSQL they
  would be matched as JSON text.
"""

from __future__ import annotations

import math
import operator as _op
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, cast, get_args

__all__ = [
    "MEMBERSHIP_OPERATORS",
    "ORDERING_OPERATORS",
    "STRING_OPERATORS",
    "MetadataCondition",
    "MetadataFilter",
    "MetadataFilterError",
    "Operator",
    "active_conditions",
    "condition_list",
    "condition_number",
    "condition_text",
    "matches_metadata",
    "parse_metadata_filter",
    "stored_number",
    "stored_text",
]


class MetadataFilterError(ValueError):
    """The request's ``metadata_filtering_conditions`` is malformed; the message suits a 400 ``invalid_param``."""


Operator = Literal[
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
]

OPERATORS: frozenset[str] = frozenset(get_args(Operator))
STRING_OPERATORS: frozenset[str] = frozenset({"contains", "not contains", "start with", "end with"})
EQUALITY_OPERATORS: frozenset[str] = frozenset({"is", "="})
INEQUALITY_OPERATORS: frozenset[str] = frozenset({"is not", "≠"})
PRESENCE_OPERATORS: frozenset[str] = frozenset({"empty", "not empty"})
MEMBERSHIP_OPERATORS: frozenset[str] = frozenset({"in", "not in"})
# Ordering operator -> SQL comparison operator (Dify: before/<, after/>, ≤, ≥, all on ``as_float()``).
ORDERING_OPERATORS: Mapping[str, str] = {">": ">", "after": ">", "<": "<", "before": "<", "≥": ">=", "≤": "<="}

_PY_ORDERING: Mapping[str, Callable[[float, float], bool]] = {
    ">": _op.gt,
    "<": _op.lt,
    ">=": _op.ge,
    "<=": _op.le,
}

# A JSON number literal with optional JSON whitespace around it: what SQLite's json_valid + json_type call a number.
_JSON_NUMBER = re.compile(r"[ \t\n\r]*(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)[ \t\n\r]*")

Value = str | int | float | list[str] | None


def _describe(value: object) -> str:
    return "null" if value is None else type(value).__name__


@dataclass(frozen=True)
class MetadataCondition:
    """One condition: ``name`` is the metadata field, ``operator`` Dify's ``comparison_operator``.

    Validated on construction (raises :class:`MetadataFilterError`), so every instance can be evaluated and compiled.
    """

    name: str
    operator: Operator
    value: Value

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise MetadataFilterError(f"metadata condition name must be a string, got {_describe(self.name)}")
        if '"' in self.name or "\x00" in self.name:
            raise MetadataFilterError(f"metadata condition name may not contain '\"' or NUL: {self.name!r}")
        if self.operator not in OPERATORS:
            raise MetadataFilterError(
                f"unsupported comparison_operator {self.operator!r}; expected one of: " + ", ".join(get_args(Operator))
            )
        value = self.value
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, str | int | float | list):
            raise MetadataFilterError(
                f"metadata condition {self.name!r}: value must be a string, a number, a list of strings or null, "
                f"got {_describe(value)}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise MetadataFilterError(f"metadata condition {self.name!r}: value must be a finite number")
        if isinstance(value, list):
            if self.operator not in MEMBERSHIP_OPERATORS and self.operator not in PRESENCE_OPERATORS:
                raise MetadataFilterError(
                    f"metadata condition {self.name!r}: a list value is only allowed with 'in' and 'not in', "
                    f"not with {self.operator!r}"
                )
            if not all(isinstance(item, str) for item in value):
                raise MetadataFilterError(f"metadata condition {self.name!r}: list values must all be strings")
            object.__setattr__(self, "value", list(value))  # defensive copy; the instance is frozen
        elif self.numeric_operand:
            _number_operand(self.name, self.operator, value)

    @property
    def numeric_operand(self) -> bool:
        """True when the value is compared as a float: ordering operators, and ``is``/``is not`` with a non-str."""
        if self.operator in ORDERING_OPERATORS:
            return True
        equality = self.operator in EQUALITY_OPERATORS or self.operator in INEQUALITY_OPERATORS
        return equality and not isinstance(self.value, str)

    @property
    def skipped(self) -> bool:
        """Dify drops a condition whose value is None, unless the operator is ``empty``/``not empty``."""
        return self.value is None and self.operator not in PRESENCE_OPERATORS


@dataclass(frozen=True)
class MetadataFilter:
    """A metadata filter: ``conditions`` combined with ``logical_operator``. A condition may itself be a filter
    (a nested group): Dify sends one flat level, OpenAI's compound filters nest (``api/openai/filters.py``)."""

    logical_operator: Literal["and", "or"]
    conditions: tuple[MetadataCondition | MetadataFilter, ...]

    def __post_init__(self) -> None:
        if self.logical_operator not in ("and", "or"):
            raise MetadataFilterError(f"logical_operator must be 'and' or 'or', got {self.logical_operator!r}")
        conditions = tuple(self.conditions)
        if not all(isinstance(c, MetadataCondition | MetadataFilter) for c in conditions):
            raise MetadataFilterError("conditions must be MetadataCondition or MetadataFilter instances")
        object.__setattr__(self, "conditions", conditions)


def _number_operand(name: str, operator: str, value: object) -> float:
    """Return ``value`` as a finite float for numeric comparison, or raise :class:`MetadataFilterError`."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MetadataFilterError(f"metadata condition {name!r}: {operator!r} needs a number, got {_describe(value)}")
    try:
        if isinstance(value, str) and "_" in value:  # Python float() accepts "1_000"; a SQL cast does not
            raise ValueError(value)
        number = float(value)
    except (ValueError, OverflowError):
        raise MetadataFilterError(f"metadata condition {name!r}: {operator!r} needs a number, got {value!r}") from None
    if not math.isfinite(number):
        raise MetadataFilterError(f"metadata condition {name!r}: {operator!r} needs a finite number, got {value!r}")
    return number


def condition_text(cond: MetadataCondition) -> str:
    """The operand of a string operator: Dify's ``str(value)``."""
    return str(cond.value)


def condition_number(cond: MetadataCondition) -> float:
    """The operand of a numeric comparison (ordering operators, and ``is``/``is not`` with a non-str value)."""
    return _number_operand(cond.name, cond.operator, cond.value)


def condition_list(cond: MetadataCondition) -> list[str]:
    """The operand of ``in``/``not in``. A str is split on commas (items stripped, blanks dropped), a list is used
    as is, and a number becomes ``[str(value)]``."""
    value = cond.value
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list):
        return list(value)
    return [] if value is None else [str(value)]


def active_conditions(flt: MetadataFilter) -> list[MetadataCondition | MetadataFilter]:
    """The conditions Dify turns into SQL: all but the skipped ones (value None, operator not empty/not empty).
    A nested group is kept; one with no active condition of its own matches every document."""
    return [c for c in flt.conditions if isinstance(c, MetadataFilter) or not c.skipped]


def stored_text(value: object) -> str | None:
    """``s`` for a stored value: the string, a number's JSON literal, ``"true"``/``"false"``; None otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return None


def stored_number(value: object) -> float | None:
    """``f`` for a stored value: a number's value, a strict JSON number literal string's value; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        match = _JSON_NUMBER.fullmatch(value)
        return float(match.group(1)) if match else None
    return None


def _matches_condition(doc_metadata: Mapping[str, object], cond: MetadataCondition) -> bool:
    op = cond.operator
    present = cond.name in doc_metadata
    if op == "empty":
        return not present
    if op == "not empty":
        return present
    if op in MEMBERSHIP_OPERATORS:
        values = condition_list(cond)
        if not values:
            return op == "not in"
        text = stored_text(doc_metadata.get(cond.name))
        if text is None:
            return False
        return (text in values) == (op == "in")
    stored = doc_metadata.get(cond.name)
    if op in STRING_OPERATORS:
        text = stored_text(stored)
        if text is None:
            return False
        needle = condition_text(cond)
        if op == "contains":
            return needle in text
        if op == "not contains":
            return needle not in text
        if op == "start with":
            return text.startswith(needle)
        return text.endswith(needle)
    if op in EQUALITY_OPERATORS or op in INEQUALITY_OPERATORS:
        equal: bool
        if isinstance(cond.value, str):
            text = stored_text(stored)
            if text is None:
                return False
            equal = text == cond.value
        else:
            number = stored_number(stored)
            if number is None:
                return False
            equal = number == condition_number(cond)
        return equal == (op in EQUALITY_OPERATORS)
    number = stored_number(stored)
    if number is None:
        return False
    return _PY_ORDERING[ORDERING_OPERATORS[op]](number, condition_number(cond))


def matches_metadata(doc_metadata: Mapping[str, object], flt: MetadataFilter) -> bool:
    """Reference evaluator: does a document with this ``doc_metadata`` pass ``flt``? Same semantics as the SQL."""
    conditions = active_conditions(flt)
    if not conditions:
        return True
    results = (
        matches_metadata(doc_metadata, c) if isinstance(c, MetadataFilter) else _matches_condition(doc_metadata, c)
        for c in conditions
    )
    return all(results) if flt.logical_operator == "and" else any(results)


def parse_metadata_filter(obj: object) -> MetadataFilter | None:
    """Parse ``retrieval_model.metadata_filtering_conditions`` from request JSON.

    Returns None when it is absent, null or empty (Dify: ``if metadata_filtering_conditions and query``). Raises
    :class:`MetadataFilterError` when the shape is wrong.
    """
    if obj is None:
        return None
    where = "metadata_filtering_conditions"
    if not isinstance(obj, Mapping):
        raise MetadataFilterError(f"{where} must be an object, got {_describe(obj)}")
    if not obj:
        return None
    logical: Literal["and", "or"]
    if "logical_operator" not in obj:
        logical = "and"
    else:
        raw_logical = obj["logical_operator"]
        if raw_logical is None:
            logical = "or"  # Dify: explicit null is kept, and `== "and"` fails, so or_() is used
        elif raw_logical in ("and", "or"):
            logical = cast(Literal["and", "or"], raw_logical)
        else:
            raise MetadataFilterError(f"{where}.logical_operator must be 'and' or 'or', got {raw_logical!r}")
    raw_conditions = obj.get("conditions")
    if raw_conditions is None:
        raw_conditions = []
    if not isinstance(raw_conditions, list):
        raise MetadataFilterError(f"{where}.conditions must be a list, got {_describe(raw_conditions)}")
    conditions: list[MetadataCondition] = []
    for index, raw in enumerate(raw_conditions):
        at = f"{where}.conditions[{index}]"
        if not isinstance(raw, Mapping):
            raise MetadataFilterError(f"{at} must be an object, got {_describe(raw)}")
        name = raw.get("name")
        if name is None:
            raise MetadataFilterError(f"{at}.name is required")
        if not isinstance(name, str):
            raise MetadataFilterError(f"{at}.name must be a string, got {_describe(name)}")
        operator = raw.get("comparison_operator")
        if operator is None:
            raise MetadataFilterError(f"{at}.comparison_operator is required")
        if not isinstance(operator, str) or operator not in OPERATORS:
            raise MetadataFilterError(
                f"{at}.comparison_operator {operator!r} is not supported; expected one of: "
                + ", ".join(get_args(Operator))
            )
        value = raw.get("value")
        try:
            conditions.append(MetadataCondition(name=name, operator=cast(Operator, operator), value=cast(Value, value)))
        except MetadataFilterError as exc:
            raise MetadataFilterError(f"{at}: {exc}") from None
    return MetadataFilter(logical_operator=logical, conditions=tuple(conditions))
