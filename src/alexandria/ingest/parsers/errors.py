"""Errors raised by :func:`alexandria.ingest.parsers.parse_file`."""

from __future__ import annotations


class UnsupportedFileType(Exception):
    """The file's extension is not one we can parse; the message names the extension."""

    def __init__(self, extension: str) -> None:
        self.extension = extension
        shown = f"'.{extension}'" if extension else "a file without extension"
        super().__init__(f"unsupported file type: {shown}")


class ParseFailed(Exception):
    """The file is corrupt, encrypted or otherwise unreadable; the message says why (e.g. ``invalid PDF: ...``)."""
