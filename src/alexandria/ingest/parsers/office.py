"""Word (.docx, python-docx) and Excel (.xlsx, openpyxl) documents.

docx, as Dify's WordExtractor: the body's paragraphs and tables in document order, joined by ``\\n``, empty
paragraphs left out. A table becomes a Markdown table (``| a | b |`` rows, a ``| --- |`` rule after the
first row); a cell's paragraphs are joined by a space, and a cell spanning several grid columns appears
once followed by empty cells. Unlike Dify, images are not extracted, hyperlink text is kept as plain
text (Dify rewrites field-code links to Markdown), and nested tables inside cells are not descended into.
Headers, footers, footnotes and comments are ignored (as in Dify).

xlsx, as Dify's ExcelExtractor: per sheet (in workbook order), the first non-empty row is the header and
every following non-empty row becomes one line of ``"header":"value"`` pairs joined by ``;``, empty cells
left out; rows are joined by ``\\n`` and sheets by a blank line. Cached formula results are read
(``data_only``), never formulas. Differences: the workbook is streamed (``read_only``), so hyperlinks are
not rendered as Markdown links; a header cell that is empty (or a value beyond the header) is named by its
column letter; numbers are written as Excel shows them (``3`` not ``3.0``, at most 15 significant digits),
dates as ISO (``2024-05-01``, with the time only when not midnight), booleans as ``TRUE``/``FALSE``, and a
newline inside a cell becomes a space so that a line is a row; a sheet holding one row only gives that
row's cells as ``"a";"b"`` rather than nothing. ``.xls`` (BIFF) is not supported.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from docx import Document
from docx.table import Table
from docx.text.paragraph import Paragraph
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from alexandria.ingest.parsers.errors import ParseFailed

__all__ = ["parse_docx", "parse_xlsx"]

MAX_UNCOMPRESSED = 1 << 30
"""Largest total uncompressed size of a .docx / .xlsx package (python-docx holds a whole part in memory)."""

# openpyxl warns (UserWarning) about workbook features it drops while reading: data validation, conditional
# formatting extensions, unknown drawing parts, missing default styles. None of them affects cell values.
warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl(\.|$)")


def parse_docx(data: bytes) -> str:
    """Paragraphs and Markdown tables of a .docx body, in document order."""
    _check_zip(data, "DOCX")
    try:
        document = Document(io.BytesIO(data))
        blocks: list[str] = []
        for block in document.iter_inner_content():
            text = _table_markdown(block) if isinstance(block, Table) else _paragraph_text(block)
            if text:
                blocks.append(text)
    except MemoryError:
        raise
    except Exception as exc:  # python-docx raises KeyError/ValueError/lxml errors on broken packages
        raise ParseFailed(f"invalid DOCX: {exc or type(exc).__name__}") from exc
    return "\n".join(blocks)


def _paragraph_text(paragraph: Paragraph) -> str:
    return paragraph.text.strip()


def _table_markdown(table: Table) -> str:
    rows = [_row_cells(row.cells) for row in table.rows]
    rows = [row for row in rows if row]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    lines = []
    for index, row in enumerate(rows):
        row = row + [""] * (width - len(row))
        lines.append("| " + " | ".join(row) + " |")
        if index == 0:
            lines.append("| " + " | ".join(["---"] * width) + " |")
    return "\n".join(lines)


def _row_cells(cells: Iterable[Any]) -> list[str]:
    """Cell texts of a row; python-docx repeats a horizontally merged cell once per grid column it spans."""
    texts: list[str] = []
    previous: object = None
    for cell in cells:
        element = cell._tc
        if element is previous:
            texts.append("")
            continue
        previous = element
        parts = (" ".join(p.text.split()) for p in cell.paragraphs)
        texts.append(" ".join(part for part in parts if part))
    return texts


def parse_xlsx(data: bytes) -> str:
    """Every sheet's rows as ``"header":"value"`` pairs (see the module docstring)."""
    _check_zip(data, "XLSX")
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # InvalidFileException, KeyError, lxml errors...
        raise ParseFailed(f"invalid XLSX: {exc or type(exc).__name__}") from exc
    sheets: list[str] = []
    try:
        for sheet in workbook.worksheets:
            if hasattr(sheet, "reset_dimensions"):
                sheet.reset_dimensions()  # read_only trusts the stored used range, which some writers get wrong
            lines = list(_sheet_lines(sheet.iter_rows(values_only=True)))
            if lines:
                sheets.append("\n".join(lines))
    except MemoryError:
        raise
    except Exception as exc:
        raise ParseFailed(f"invalid XLSX: {exc or type(exc).__name__}") from exc
    finally:
        workbook.close()
    return "\n\n".join(sheets)


def _sheet_lines(rows: Iterable[tuple[Any, ...]]) -> Iterator[str]:
    header: list[str] | None = None
    first: list[str] = []
    data_rows = False
    for row in rows:
        cells = [_cell_text(value) for value in row]
        if not any(cells):
            continue
        if header is None:
            first = cells
            header = [cell or get_column_letter(i + 1) for i, cell in enumerate(cells)]
            continue
        pairs = [
            f'"{header[i] if i < len(header) else get_column_letter(i + 1)}":"{cell}"'
            for i, cell in enumerate(cells)
            if cell
        ]
        yield ";".join(pairs)
        data_rows = True
    if header is not None and not data_rows:
        yield ";".join(f'"{cell}"' for cell in first if cell)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.15g}"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    text = str(value).strip()
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def _check_zip(data: bytes, kind: str) -> None:
    """Refuse what is not a ZIP package, and archives declaring more than MAX_UNCOMPRESSED bytes (zip bombs)."""
    if not data:
        raise ParseFailed(f"invalid {kind}: empty file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise ParseFailed(f"invalid {kind}: not a ZIP (Office Open XML) package ({exc})") from exc
    # zipfile stops decompressing a member at its declared size, so the declared total bounds what is read
    if declared > MAX_UNCOMPRESSED:
        raise ParseFailed(f"invalid {kind}: expands to {declared} bytes (more than {MAX_UNCOMPRESSED})")
