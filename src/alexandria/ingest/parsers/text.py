"""Plain-text decoding (txt, markdown, vtt, properties) and CSV rows.

Decoding order: a BOM (UTF-8, UTF-32, UTF-16) wins; then BOM-less UTF-16 (NUL bytes on one parity);
then strict UTF-8; then charset-normalizer on a sample, restricted to the legacy encodings met in practice.
Its guesses among the Latin single-byte code pages are unreliable (French text comes back as cp1257, short
texts as anything), so any Latin-family guess becomes cp1252 (a superset of latin-1's printable range),
except cp1250 / cp1254 when it also recognised a Central European / Turkish language. Last resort: latin-1,
which never fails. Binary data (a NUL byte in the first 8000 bytes that is not UTF-16/32, git's heuristic)
is refused. Newlines are normalised to ``\\n`` and stray NULs dropped.
"""

from __future__ import annotations

import codecs
import csv
import io

import charset_normalizer

from alexandria.ingest.parsers.errors import ParseFailed

__all__ = ["decode_text", "parse_csv", "parse_text"]

_DETECT_SAMPLE = 128 * 1024
_BINARY_SNIFF = 8000
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CANDIDATES = [
    "cp1252", "cp1250", "cp1251", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "cp874",
    "koi8_r", "cp932", "euc_jp", "iso2022_jp", "gb18030", "big5", "cp949", "mac_roman",
]  # fmt: skip
_LATIN_FAMILY = frozenset(
    codecs.lookup(name).name
    for name in ("cp1250", "cp1252", "cp1254", "cp1257", "cp1258", "mac_roman", "latin_1", "iso8859_15")
)
_CENTRAL_EUROPEAN = frozenset({"Polish", "Czech", "Slovak", "Hungarian", "Croatian", "Slovene", "Romanian"})

_CSV_SNIFF = 64 * 1024
_CSV_DELIMITERS = ",;\t|"


def parse_text(data: bytes) -> str:
    """txt / md / markdown / mdx / vtt / properties: the decoded source, markup kept."""
    return decode_text(data)


def decode_text(data: bytes) -> str:
    """Decode ``data`` (see the module docstring), with ``\\n`` newlines; ParseFailed for binary data."""
    text = _decode(data)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.replace("\x00", "") if "\x00" in text else text


def _decode(data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return str(data[len(bom) :], encoding, errors="replace")
    head = data[:_BINARY_SNIFF]
    if b"\x00" in head:
        utf16 = _utf16_without_bom(data)
        if utf16 is None:
            raise ParseFailed("invalid text file: binary content (NUL bytes)")
        return utf16
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError:
        pass
    return str(data, _guess_legacy_encoding(data), errors="replace")


def _utf16_without_bom(data: bytes) -> str | None:
    sample = data[: _BINARY_SNIFF & ~1]
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    half = max(len(sample) // 2, 1)
    if odd_nuls > half * 0.3 and even_nuls < half * 0.05:
        encoding = "utf-16-le"
    elif even_nuls > half * 0.3 and odd_nuls < half * 0.05:
        encoding = "utf-16-be"
    else:
        return None
    try:
        return str(data[: len(data) & ~1], encoding)
    except UnicodeDecodeError:
        return None


def _guess_legacy_encoding(data: bytes) -> str:
    sample = data[:_DETECT_SAMPLE]
    if len(data) > _DETECT_SAMPLE and (cut := sample.rfind(b"\n")) > 0:
        sample = sample[:cut]  # do not end the sample inside a multi-byte character
    best = charset_normalizer.from_bytes(sample, cp_isolation=_CANDIDATES).best()
    if best is not None:
        encoding = codecs.lookup(best.encoding).name
        if encoding not in _LATIN_FAMILY:
            return encoding
        if encoding == "cp1250" and best.language in _CENTRAL_EUROPEAN:
            return encoding
        if encoding == "cp1254" and best.language == "Turkish":
            return encoding
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


def parse_csv(data: bytes) -> str:
    """One line per non-empty record: ``header: value`` pairs joined by ``;`` (Dify's CSVExtractor format).

    The delimiter is sniffed among ``, ; TAB |`` (fallback ``,``); quoted fields may hold delimiters and
    newlines (a newline inside a value becomes a space, so that a line is a record). The first non-empty
    record is the header. Empty values are left out; cells beyond the header are named ``column N``.
    A file with a header only gives the header's cells joined by ``;``.
    """
    text = decode_text(data)
    sample = text[:_CSV_SNIFF]
    if len(text) > _CSV_SNIFF and (cut := sample.rfind("\n")) > 0:
        sample = sample[:cut]
    dialect: type[csv.Dialect] | csv.Dialect
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=_CSV_DELIMITERS)
    except csv.Error:
        dialect = csv.excel
    header: list[str] | None = None
    lines: list[str] = []
    try:
        for record in csv.reader(io.StringIO(text, newline=""), dialect):
            cells = [_one_line(cell) for cell in record]
            if not any(cells):
                continue
            if header is None:
                header = [cell or f"column {i + 1}" for i, cell in enumerate(cells)]
                continue
            pairs = [f"{_header(header, i)}: {cell}" for i, cell in enumerate(cells) if cell]
            lines.append(";".join(pairs))
    except csv.Error as exc:
        raise ParseFailed(f"invalid CSV: {exc}") from exc
    if header is not None and not lines:
        return ";".join(header)
    return "\n".join(lines)


def _header(header: list[str], index: int) -> str:
    return header[index] if index < len(header) else f"column {index + 1}"


def _one_line(cell: str) -> str:
    cell = cell.strip()
    return " ".join(cell.split()) if "\n" in cell else cell
