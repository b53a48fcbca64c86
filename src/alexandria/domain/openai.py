"""Domain objects of OpenAI's Files and Vector Stores API over the core (``services/openai_stores.py``).

A vector store is a :class:`~alexandria.domain.models.DataSource` (its id ``vs_<uuid>``); a file is a stored upload
(``file-<uuid>``); a vector-store file is a document of that data source whose document id is the file's uuid, its
``attributes`` the document's ``doc_metadata`` (the one metadata column every door filters on)."""

from __future__ import annotations

from dataclasses import dataclass

from alexandria.domain.dify import UploadedFile

FILE_PREFIX = "file-"
STORE_PREFIX = "vs_"
BATCH_PREFIX = "vsfb_"

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
FILE_STATUSES = ("in_progress", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class StoredFile(UploadedFile):
    """A file of the Files API: an upload (``uuid`` is its id without ``file-``) with its ``purpose``, and the data
    source it is confined to when it was uploaded with a key bound to one (``scope_data_source_id``)."""

    purpose: str
    scope_data_source_id: int | None

    @property
    def file_id(self) -> str:
        return FILE_PREFIX + self.uuid


@dataclass(frozen=True)
class FileCounts:
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.in_progress + self.completed + self.failed + self.cancelled


def strip_prefix(value: str, prefix: str) -> str | None:
    """``value`` without ``prefix``; None when it does not start with it."""
    return value[len(prefix) :] if value.startswith(prefix) and len(value) > len(prefix) else None
