"""File parsers for document ingestion: uploaded bytes to plain text (Dify's "create document by file").

Public API: :data:`SUPPORTED_EXTENSIONS`, :data:`MIME_TYPES`, :func:`extension_of`, :func:`parse_file`,
:class:`UnsupportedFileType`, :class:`ParseFailed`. The format is chosen by the file name's extension
(case-insensitive), as Dify's ``ExtractProcessor`` does; the content is not sniffed.

What follows Dify's extractors (``api/core/rag/extractor/*``) and where it differs:

* txt, vtt, properties (TextExtractor): the decoded text, with encoding detection (:mod:`.text`).
* md, markdown, mdx: the decoded Markdown *source*, headings and markup kept. Dify's MarkdownExtractor
  re-emits ``\\n\\n<heading>\\n<body>`` sections with ``#`` and inline HTML tags stripped; the source is kept
  here so that the chunker sees the heading structure.
* html, htm (HtmlExtractor): visible text with block structure instead of Dify's bare ``get_text()``;
  head/script/style are dropped (:mod:`.markup`).
* pdf (PdfExtractor): page texts joined by a blank line; pypdf instead of pypdfium2 (:mod:`.pdf`).
* docx (WordExtractor): paragraphs and Markdown tables in document order, no images (:mod:`.office`).
* xlsx (ExcelExtractor): ``"header":"value";...`` per row (:mod:`.office`); ``.xls`` is not supported.
* csv (CSVExtractor): ``header: value;...`` per row, empty values left out (:mod:`.text`).

Rows, pages and paragraphs that Dify returns as separate documents are joined here with ``\\n`` (rows,
paragraphs) or ``\\n\\n`` (pages, sheets): Dify's own text path joins its documents with ``\\n``.
Output never contains ``\\r`` from text files (newlines normalised) nor NUL characters.
"""

from __future__ import annotations

from collections.abc import Callable

from alexandria.ingest.parsers.errors import ParseFailed, UnsupportedFileType
from alexandria.ingest.parsers.markup import parse_html
from alexandria.ingest.parsers.office import parse_docx, parse_xlsx
from alexandria.ingest.parsers.pdf import parse_pdf
from alexandria.ingest.parsers.text import parse_csv, parse_text

__all__ = [
    "MIME_TYPES",
    "SUPPORTED_EXTENSIONS",
    "ParseFailed",
    "UnsupportedFileType",
    "extension_of",
    "parse_file",
]

_PARSERS: dict[str, Callable[[bytes], str]] = {
    "txt": parse_text,
    "md": parse_text,
    "markdown": parse_text,
    "mdx": parse_text,
    "vtt": parse_text,
    "properties": parse_text,
    "html": parse_html,
    "htm": parse_html,
    "pdf": parse_pdf,
    "docx": parse_docx,
    "xlsx": parse_xlsx,
    "csv": parse_csv,
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(_PARSERS)
"""Lower-case extensions, without the dot, that :func:`parse_file` accepts."""

MIME_TYPES: dict[str, str] = {
    "txt": "text/plain",
    "md": "text/markdown",
    "markdown": "text/markdown",
    "mdx": "text/markdown",
    "vtt": "text/vtt",
    "properties": "text/x-java-properties",
    "html": "text/html",
    "htm": "text/html",
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv",
}
"""Extension to MIME type, for every supported extension."""


def extension_of(filename: str) -> str:
    """Lower-case extension of ``filename`` without the dot; ``""`` when it has none.

    Directories (``/`` or ``\\``) are ignored, and so is a leading dot (``.env`` has no extension).
    """
    name = filename.strip().replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem.strip("."):
        return ""
    return extension.strip().lower()


def parse_file(filename: str, data: bytes) -> str:
    """Plain text of an uploaded file, the format chosen by ``filename``'s extension.

    Raises :class:`UnsupportedFileType` for an extension not in :data:`SUPPORTED_EXTENSIONS`, and
    :class:`ParseFailed` for a corrupt, empty (binary formats), encrypted or otherwise unreadable file.
    """
    extension = extension_of(filename)
    parser = _PARSERS.get(extension)
    if parser is None:
        raise UnsupportedFileType(extension)
    text = parser(data)
    return text.replace("\x00", "") if "\x00" in text else text
