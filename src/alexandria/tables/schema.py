"""Table schema inference, after Dust's ``TableSchema::from_rows`` and ``merge`` (dust-behaviour.md §4.1).

- Columns appear in first-seen order across rows; ``null`` values are skipped.
- Types: bool → ``bool``; an integer in i64 range → ``int``; other numbers → ``float``; string → ``text``;
  ``{"type": "datetime", "epoch": <int ms>}`` → ``datetime``; anything else is an error.
- A column seen with several types becomes ``float`` for int+float, ``text`` for any other mix.
- ``possible_values`` are the distinct renderings in first-seen order: ``TRUE``/``FALSE``, numbers as Rust's
  ``Display`` writes them (``3``, ``1.2``, ``1e20``), strings in double quotes, datetimes as ``%Y-%m-%d %H:%M:%S``
  (UTC). A column's list becomes ``None`` for good once a rendering is longer than 32 bytes or there are more than 16.

:class:`SchemaBuilder` is the inference as an accumulator: the schema of rows ``a + b`` is the schema of ``a``
continued with ``b``, which is what lets rows be appended without reading the table again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from alexandria.domain.tables import Cell, TableColumn, ValueType
from alexandria.tables.errors import InvalidRows

POSSIBLE_VALUES_MAX_LEN = 32
POSSIBLE_VALUES_MAX_COUNT = 16
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# datetimes we can write: years 1 to 9999 (chrono goes further; nothing real needs it)
MIN_EPOCH_MS = -62135596800000
MAX_EPOCH_MS = 253402300799999


def format_float(value: float) -> str:
    """``value`` as Rust's ``ryu`` (serde_json's ``Display`` for f64) writes it: ``1.0``, ``0.00001``, ``1e-7``,
    ``1e16``, ``1.234e33``. Non-finite values are written ``NaN``/``inf``/``-inf`` (they never reach a table)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    sign = "-" if str(value).startswith("-") else ""
    if value == 0:
        return sign + "0.0"
    # the shortest round-trip digits, as ryu computes them, come from repr
    digits_t, exp = Decimal(repr(abs(value))).as_tuple()[1:]
    assert isinstance(exp, int)
    digits = "".join(str(d) for d in digits_t).lstrip("0")
    stripped = digits.rstrip("0")
    k = exp + (len(digits) - len(stripped))
    digits = stripped
    length = len(digits)
    kk = length + k  # position of the decimal point relative to the first digit
    if k >= 0 and kk <= 16:
        out = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        out = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        out = "0." + "0" * (-kk) + digits
    elif length == 1:
        out = f"{digits}e{kk - 1}"
    else:
        out = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + out


def datetime_string(epoch_ms: int) -> str:
    """``%Y-%m-%d %H:%M:%S`` (UTC) of an epoch in milliseconds (seconds floored)."""
    return (_EPOCH + dt.timedelta(milliseconds=epoch_ms - epoch_ms % 1000)).strftime(DATETIME_FORMAT)


def is_datetime_object(value: Mapping[str, Any]) -> bool:
    epoch = value.get("epoch")
    return (
        value.get("type") == "datetime"
        and isinstance(epoch, int)
        and not isinstance(epoch, bool)
        and MIN_EPOCH_MS <= epoch <= MAX_EPOCH_MS
    )


def value_type(value: Cell, key: str = "?", row_index: int = 0) -> ValueType:
    """The schema type of a non-null value (errors like Dust's for arrays and non-datetime objects)."""
    kind = type(value)
    if kind is bool:
        return "bool"
    if kind is int:
        assert isinstance(value, int)
        return "int" if I64_MIN <= value <= I64_MAX else "float"
    if kind is float:
        return "float"
    if kind is str:
        return "text"
    if isinstance(value, dict) and is_datetime_object(value):
        return "datetime"
    if isinstance(value, list):
        raise InvalidRows(
            f"Field {key} is not a primitive type on row {row_index} (nondatetime object and arrays are not supported)"
        )
    raise InvalidRows(
        f"Field {key} is not a primitive or datetime object type on row {row_index} "
        f"(non datetime object and arrays are not supported): {json.dumps(value)[:200]}"
    )


def render_value(value: Cell) -> str:
    """How a value is written in ``possible_values``."""
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return datetime_string(int(value["epoch"]))
    raise InvalidRows(f"cannot render {value!r}")


def merge_types(a: ValueType, b: ValueType) -> ValueType:
    if a == b:
        return a
    if {a, b} == {"int", "float"}:
        return "float"
    return "text"


class _Column:
    __slots__ = ("name", "possible", "seen", "value_type")

    def __init__(self, name: str, value_type: ValueType, possible: list[str] | None) -> None:
        self.name = name
        self.value_type: ValueType = value_type
        self.possible = possible
        self.seen = set(possible) if possible is not None else set()

    def accumulate(self, value: Cell) -> None:
        if self.possible is None:
            return
        rendered = render_value(value)
        if len(rendered.encode()) > POSSIBLE_VALUES_MAX_LEN:
            self.possible = None
            self.seen = set()
            return
        if rendered not in self.seen:
            self.seen.add(rendered)
            self.possible.append(rendered)
            if len(self.possible) > POSSIBLE_VALUES_MAX_COUNT:
                self.possible = None
                self.seen = set()


class SchemaBuilder:
    """Incremental ``TableSchema::from_rows``: feed rows in order, read :meth:`columns` at any point. Starting from
    the columns of rows ``a`` and feeding rows ``b`` gives exactly the schema of ``a + b``."""

    def __init__(self, columns: Iterable[TableColumn] = ()) -> None:
        self._columns: dict[str, _Column] = {}
        for c in columns:
            possible = list(c.possible_values) if c.possible_values is not None else None
            self._columns[c.name] = _Column(c.name, c.value_type, possible)
        self._rows = 0

    def add_row(self, value: Mapping[str, Cell]) -> None:
        row_index = self._rows
        self._rows += 1
        columns = self._columns
        for key, cell in value.items():
            if cell is None:
                continue
            kind = value_type(cell, key, row_index)
            column = columns.get(key)
            if column is None:
                column = columns[key] = _Column(key, kind, [])
            elif column.value_type != kind:
                column.value_type = merge_types(column.value_type, kind)
            column.accumulate(cell)

    def add_rows(self, values: Iterable[Mapping[str, Cell]]) -> SchemaBuilder:
        for value in values:
            self.add_row(value)
        return self

    def columns(self) -> tuple[TableColumn, ...]:
        return tuple(
            TableColumn(c.name, c.value_type, tuple(c.possible) if c.possible is not None else None)
            for c in self._columns.values()
        )


def from_rows(values: Iterable[Mapping[str, Cell]]) -> tuple[TableColumn, ...]:
    """Dust's ``TableSchema::from_rows``."""
    return SchemaBuilder().add_rows(values).columns()


def schema_after_write(
    schema: Sequence[TableColumn] | None,
    stale: bool,
    truncate: bool,
    replaced: bool,
    appended: Iterable[Mapping[str, Cell]],
) -> tuple[tuple[TableColumn, ...] | None, bool]:
    """The schema kept with a table after a rows upsert, and whether it is stale (Dust's ``schema_stale_at``); the
    one statement of the rule. ``appended``: the values of the rows that were not stored before, in order.

    - truncate: the schema of the rows written, exact;
    - a stored row replaced by a different value: stale (deleting a row marks it stale too), and a stale schema is
      recomputed from all rows when next read (``refresh_table_schema``, only if the rows did not change meanwhile);
    - rows only appended to an exact schema: the inference continues over them, still exact (see
      :class:`SchemaBuilder`), without reading the stored rows again.
    """
    if truncate:
        return from_rows(appended), False
    if replaced or stale:
        return (None if schema is None else tuple(schema)), True
    return SchemaBuilder(schema or ()).add_rows(appended).columns(), False


def merge(ours: Sequence[TableColumn], other: Sequence[TableColumn]) -> tuple[TableColumn, ...]:
    """Dust's ``TableSchema::merge``: our columns (types widened, possible values concatenated and capped again, an
    empty list becoming ``None``), then the other schema's new columns. Unlike Dust, a ``None`` (given up) list stays
    ``None``: it means the column had too many or too long values, which merging cannot undo."""
    theirs = {c.name: c for c in other}
    out: list[TableColumn] = []
    for col in ours:
        o = theirs.get(col.name)
        if o is None:
            out.append(col)
            continue
        kind = merge_types(col.value_type, o.value_type)
        possible: tuple[str, ...] | None = None
        if col.possible_values is not None and o.possible_values is not None:
            values = tuple(dict.fromkeys((*col.possible_values, *o.possible_values)))
            too_long = any(len(v.encode()) > POSSIBLE_VALUES_MAX_LEN for v in values)
            if values and not too_long and len(values) <= POSSIBLE_VALUES_MAX_COUNT:
                possible = values
        out.append(TableColumn(col.name, kind, possible))
    names = {c.name for c in ours}
    out.extend(c for c in other if c.name not in names)
    return tuple(out)


def schema_to_json(columns: Sequence[TableColumn] | None) -> list[dict[str, Any]] | None:
    """The Dust JSON shape of a schema: ``[{name, value_type, possible_values}]``."""
    if columns is None:
        return None
    return [
        {
            "name": c.name,
            "value_type": c.value_type,
            "possible_values": list(c.possible_values) if c.possible_values is not None else None,
        }
        for c in columns
    ]


def schema_from_json(raw: Any) -> tuple[TableColumn, ...] | None:
    if raw is None:
        return None
    return tuple(
        TableColumn(
            str(c["name"]),
            c["value_type"],
            tuple(str(v) for v in c["possible_values"]) if c.get("possible_values") is not None else None,
        )
        for c in raw
    )
