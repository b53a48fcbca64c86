"""OpenAI's attribute filters compiled into the core's metadata filter tree (``domain/metadata_filter.py``), the one
every door's filter becomes and both engines compile into the ranking queries (filters before ranking, never after).

``ComparisonFilter {type, key, value}`` with ``eq, ne, gt, gte, lt, lte, in, nin``; ``CompoundFilter {type: and|or,
filters: [...]}``, nested to any depth (a nested group of the tree). The mapping:

- ``eq``/``ne`` with a string: text equality (``is``/``is not``); with a number: numeric equality (``=``/``≠``, so
  the stored number ``5`` and ``5.0`` match ``5``); with a boolean: the stored value's text ``"true"``/``"false"``.
- ``gt``/``gte``/``lt``/``lte``: numbers only (a stored number, or a numeric string); anything else is a 400.
- ``in``/``nin``: a list of strings and numbers, compared with the stored value's text (numbers as JSON literals).
- As in the core's semantics, a file whose attribute is missing matches no comparison (``ne``/``nin`` included).
"""

from __future__ import annotations

import math
from typing import Literal, cast

from alexandria.api.openai.errors import bad_request
from alexandria.domain.metadata_filter import (
    MetadataCondition,
    MetadataFilter,
    MetadataFilterError,
    Operator,
    stored_text,
)

PARAM = "filters"
COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
_ORDERING: dict[str, Operator] = {"gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}
MAX_DEPTH = 16


def _error(message: str) -> Exception:
    return bad_request(message, PARAM)


def parse_filters(obj: object) -> MetadataFilter | None:
    """The request's ``filters`` as the core's tree; None when absent."""
    if obj is None:
        return None
    node = _node(obj, PARAM, 0)
    return node if isinstance(node, MetadataFilter) else MetadataFilter("and", (node,))


def _node(obj: object, at: str, depth: int) -> MetadataCondition | MetadataFilter:
    if depth > MAX_DEPTH:
        raise _error(f"Invalid '{at}': filters nest deeper than {MAX_DEPTH} levels.")
    if not isinstance(obj, dict):
        raise _error(f"Invalid type for '{at}': expected an object.")
    kind = obj.get("type")
    if kind in ("and", "or"):
        children = obj.get("filters")
        if not isinstance(children, list) or not children:
            raise _error(f"Invalid '{at}.filters': expected a non-empty array of filters.")
        nodes = tuple(_node(c, f"{at}.filters[{i}]", depth + 1) for i, c in enumerate(children))
        return MetadataFilter(cast(Literal["and", "or"], kind), nodes)
    if kind not in COMPARISONS:
        raise _error(f"Invalid '{at}.type': expected one of {', '.join(COMPARISONS)}, and, or; got {kind!r}.")
    key = obj.get("key")
    if not isinstance(key, str) or not key:
        raise _error(f"Invalid '{at}.key': expected a non-empty string.")
    if "value" not in obj:
        raise _error(f"Missing required parameter: '{at}.value'.")
    try:
        return _comparison(str(kind), key, obj["value"], at)
    except MetadataFilterError as exc:
        raise _error(f"Invalid '{at}': {exc}") from exc


def _comparison(kind: str, key: str, value: object, at: str) -> MetadataCondition:
    if isinstance(value, float) and not math.isfinite(value):
        raise _error(f"Invalid '{at}.value': numbers must be finite.")
    if kind in ("in", "nin"):
        if not isinstance(value, list):
            raise _error(f"Invalid '{at}.value': '{kind}' expects an array of strings or numbers.")
        items: list[str] = []
        for item in value:
            text = None if isinstance(item, bool) else stored_text(item)
            if text is None:
                raise _error(f"Invalid '{at}.value': '{kind}' expects an array of strings or numbers.")
            items.append(text)
        return MetadataCondition(key, "in" if kind == "in" else "not in", items)
    if isinstance(value, list | dict) or value is None:
        raise _error(f"Invalid '{at}.value': '{kind}' expects a string, a number or a boolean.")
    if kind in _ORDERING:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _error(f"Invalid '{at}.value': '{kind}' compares numbers, got {type(value).__name__}.")
        return MetadataCondition(key, _ORDERING[kind], value)
    equal = kind == "eq"
    if isinstance(value, bool):
        return MetadataCondition(key, "is" if equal else "is not", "true" if value else "false")
    if isinstance(value, str):
        return MetadataCondition(key, "is" if equal else "is not", value)
    if isinstance(value, int | float):
        return MetadataCondition(key, "=" if equal else "≠", value)
    raise _error(f"Invalid '{at}.value': expected a string, a number or a boolean.")
