"""PDF text with pypdf, page by page.

Dify's PdfExtractor (pypdfium2) yields one document per page (its plain-text cache joins them with
``\\n\\n``); here each page's text (pypdf's ``extract_text``, right-stripped) is joined with ``\\n\\n``, empty
pages left out. Encrypted files are opened with the empty user password when they have one (the common
"owner password only" case; AES needs the ``cryptography`` package); otherwise ParseFailed. A page whose
extraction raises is skipped with a log warning, unless every page fails.

Memory: the reader works on the caller's bytes without copying them (see :func:`_stream`), pages are
extracted one at a time and each page's parsed objects are released before the next one (see
:func:`_release`), so the peak is about twice the extracted text (the page texts, then their join)
plus pypdf's page tree (~2.5 KB a page), whatever the size of the content streams.

pypdf reports the repairs it makes on non-conforming files as WARNING records on the ``pypdf`` loggers;
unless the application configured that logger, it is set to ERROR so that routine ingestion stays quiet.
"""

from __future__ import annotations

import io
import logging
from typing import cast

from pypdf import PdfReader
from pypdf.errors import DependencyError, PdfReadError

from alexandria.ingest.parsers.errors import ParseFailed

__all__ = ["parse_pdf"]

log = logging.getLogger(__name__)

_pypdf_logger = logging.getLogger("pypdf")
if _pypdf_logger.level == logging.NOTSET:
    _pypdf_logger.setLevel(logging.ERROR)


def parse_pdf(data: bytes) -> str:
    """Text of every page, pages joined by a blank line; ParseFailed for corrupt or locked files."""
    if not data:
        raise ParseFailed("invalid PDF: empty file")
    if b"%PDF-" not in data[:1024]:
        raise ParseFailed("invalid PDF: no %PDF- header")
    try:
        reader = PdfReader(_stream(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseFailed("invalid PDF: encrypted, a password is required")
        page_count = len(reader.pages)
    except ParseFailed:
        raise
    except DependencyError as exc:
        raise ParseFailed(f"invalid PDF: cannot decrypt ({exc})") from exc
    except RecursionError as exc:
        raise ParseFailed("invalid PDF: object structure nested too deeply") from exc
    except (PdfReadError, Exception) as exc:
        raise ParseFailed(f"invalid PDF: {exc}") from exc
    texts: list[str] = []
    failures = 0
    last_error: Exception | None = None
    for index in range(page_count):
        try:
            text = reader.pages[index].extract_text()
        except MemoryError:
            raise
        except Exception as exc:  # one broken page (bad stream, odd font) must not lose the others
            failures += 1
            last_error = exc
            log.warning("pdf page %d: text extraction failed: %s", index + 1, exc)
            continue
        finally:
            _release(reader)
        text = text.rstrip()
        if text:
            texts.append(text)
    if page_count and failures == page_count:
        raise ParseFailed(f"invalid PDF: no page could be read ({last_error})")
    return "\n\n".join(texts)


def _stream(data: bytes) -> io.BufferedReader:
    """A seekable stream over ``data`` that never copies it.

    ``BytesIO(data)`` shares the bytes until someone asks for its buffer, and pypdf does (``getbuffer()``
    to learn the size), which copies the whole file. A ``BufferedReader`` on top hides ``getbuffer``.
    """
    return io.BufferedReader(cast(io.RawIOBase, io.BytesIO(data)))


def _release(reader: PdfReader) -> None:
    """Forget the objects resolved for the last page.

    pypdf caches every object it resolves (``resolved_objects``), so extracting a whole file would keep all
    decoded content streams alive. Clearing the cache makes an object shared by pages (a font) be parsed
    again for each page, which is cheap next to text extraction.
    """
    reader.resolved_objects.clear()
