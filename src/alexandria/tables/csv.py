"""CSV to rows, after Dust's ``core/src/databases/csv.rs`` (dust-behaviour.md §4.2).

- The delimiter is the most frequent of ``,`` ``;`` ``\\t`` outside quotes in the first 16 KiB (ties: that order).
- Headers are slugified (NFKD, diacritics dropped, ``_`` between a lowercase letter and a digit, lowercase,
  whitespace and ``[^a-z0-9_]`` → ``_``, runs of ``_`` collapsed); an empty name becomes ``col_{i}``; duplicates
  ``x_2``, ``x_3``…; the reserved header ``__dust_id`` gives each row's ``row_id`` (else the 0-based row index).
- Cells are trimmed; empty → ``null``; integers → int; other numbers → float; ``true``/``t``/``false`` (any case)
  → bool; RFC 3339 and RFC 2822 dates → ``{"type": "datetime", "epoch", "string_value"}``; anything else → text.
- Limits: 512 columns, column names of 1,024 characters, 500,000 rows; every row must have as many fields as the
  header.
"""

from __future__ import annotations

import csv
import datetime as dt
import email.utils
import io
import re
import unicodedata

from alexandria.domain.tables import Cell, RowValue, TableRow
from alexandria.tables.errors import InvalidCsv
from alexandria.tables.schema import MAX_EPOCH_MS, MIN_EPOCH_MS
from alexandria.tables.values import datetime_cell

MAX_TABLE_COLUMNS = 512
MAX_COLUMN_NAME_LENGTH = 1024
MAX_TABLE_ROWS = 500_000
MAX_CELL_CHARS = 1 << 26
DUST_ID = "__dust_id"
DELIMITERS = ",;\t"

_DIACRITICS = re.compile("[\u0300-\u036f]")
_UNDERSCORES = re.compile("_+")
_WHITESPACE = re.compile(r"\s+")
_NON_ASCII = re.compile("[^a-zA-Z0-9_]")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII)
_RFC2822 = re.compile(
    r"^(?:[A-Za-z]{3},\s*)?\d{1,2}\s+[A-Za-z]{3}\s+\d{2,4}\s+\d{1,2}:\d{2}(?::\d{2})?\s+(?:[+-]\d{4}|[A-Za-z]{1,5})$"
)


def slugify(text: str) -> str:
    s = _DIACRITICS.sub("", unicodedata.normalize("NFKD", text))
    out: list[str] = []
    for i, c in enumerate(s):
        if i > 0 and (c.isupper() or c in "0123456789") and s[i - 1].islower():
            out.append("_")
        out.append(c)
    s = "".join(out).lower().strip()
    s = _WHITESPACE.sub("_", s)
    s = _NON_ASCII.sub("_", s)
    return _UNDERSCORES.sub("_", s)


def sanitize_headers(headers: list[str]) -> list[str]:
    acc: list[str] = []
    for header in headers:
        slug = header if header == DUST_ID else slugify(header.lower()) or f"col_{len(acc)}"
        if len(slug) > MAX_COLUMN_NAME_LENGTH:
            raise InvalidCsv(f"Column name exceeds maximum length ({MAX_COLUMN_NAME_LENGTH} characters).")
        if slug not in acc:
            acc.append(slug)
            continue
        for i in range(2, 64):
            candidate = slugify(f"{slug}-{i}")
            if candidate not in acc:
                acc.append(candidate)
                break
        else:
            raise InvalidCsv(f"Failed to generate unique slugified name for header '{header}' after multiple attempts")
    return acc


def find_delimiter(text: str) -> str:
    counts = dict.fromkeys(DELIMITERS, 0)
    in_quotes = False
    for c in text[: 16 * 1024]:
        if c == '"':
            in_quotes = not in_quotes
        elif not in_quotes and c in counts:
            counts[c] += 1
    best = max(counts.values())
    return next(d for d in DELIMITERS if counts[d] == best)


def _epoch_ms(when: dt.datetime) -> int | None:
    epoch = (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    return epoch if MIN_EPOCH_MS <= epoch <= MAX_EPOCH_MS else None


def parse_date(text: str) -> int | None:
    """Epoch milliseconds of an RFC 3339 or RFC 2822 date, else ``None``."""
    m = _RFC3339.match(text)
    if m is not None:
        year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
        micros = int((m.group(7) or ".0")[1:].ljust(6, "0")[:6])
        zone = m.group(8)
        offset = dt.timedelta(0)
        if zone not in ("Z", "z"):
            sign = 1 if zone[0] == "+" else -1
            offset = sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        try:
            tz = dt.timezone(offset)
            when = dt.datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
        except ValueError:
            return None
        return _epoch_ms(when)
    if _RFC2822.match(text) is not None:
        try:
            parsed = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return _epoch_ms(parsed)
    return None


def guess_cell(raw: str) -> Cell:
    text = raw.strip()
    if not text:
        return None
    if _INT.match(text) is not None:
        number = int(text)
        if -(2**63) <= number < 2**63:
            return number
        return float(number)
    if _FLOAT.match(text) is not None:
        value = float(text)
        return value if value not in (float("inf"), float("-inf")) else text
    lowered = text.lower()
    if lowered in ("true", "t"):
        return True
    if lowered == "false":
        return False
    epoch = parse_date(text)
    if epoch is not None:
        return datetime_cell(epoch, text)
    return text


def parse_csv(content: str) -> list[TableRow]:
    """Rows of a CSV text (``InvalidCsv`` with a clear message when it cannot be used)."""
    if content.startswith("\ufeff"):
        content = content[1:]
    delimiter = find_delimiter(content)
    # cells may be as large as a request body allows (the csv module's default cap is 128 KiB)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CELL_CHARS))
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
    try:
        raw_headers = next(reader, None)
        if raw_headers is None or raw_headers == []:
            raise InvalidCsv("No columns in CSV file.")
        headers = sanitize_headers(raw_headers)
        if len(headers) > MAX_TABLE_COLUMNS:
            raise InvalidCsv(f"Too many columns in CSV file ({len(headers)}, at most {MAX_TABLE_COLUMNS}).")
        id_pos = headers.index(DUST_ID) if DUST_ID in headers else None
        names = [h for h in headers if h != DUST_ID] if id_pos is not None else headers
        rows: list[TableRow] = []
        for record in reader:
            if not record:
                continue  # blank line
            if len(record) != len(headers):
                raise InvalidCsv(
                    f"Row {len(rows)} (line {reader.line_num}) has {len(record)} fields but the header has "
                    f"{len(headers)}."
                )
            if len(rows) >= MAX_TABLE_ROWS:
                raise InvalidCsv(f"Too many rows in CSV file (at most {MAX_TABLE_ROWS}).")
            row_id = record.pop(id_pos).strip() if id_pos is not None else str(len(rows))
            value: RowValue = {name: guess_cell(cell) for name, cell in zip(names, record, strict=True)}
            rows.append(TableRow(row_id, value))
    except csv.Error as exc:
        raise InvalidCsv(f"Invalid CSV content: {exc}") from exc
    return rows
