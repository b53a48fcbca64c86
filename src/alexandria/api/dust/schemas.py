"""Dust request bodies (the SDK's zod schemas, in pydantic: unknown keys ignored, types strict)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SectionBody(_Body):
    prefix: StrictStr | None
    content: StrictStr | None
    sections: list[SectionBody]


class UpsertSyncType(_Body):
    sync_type: StrictStr | None = None


class UpsertDocumentBody(_Body):
    title: StrictStr | None = None
    mime_type: StrictStr | None = None
    text: StrictStr | None = None
    section: SectionBody | None = None
    source_url: StrictStr | None = None
    tags: list[StrictStr] | None = None
    timestamp: StrictInt | StrictFloat | None = None
    parent_id: StrictStr | None = None
    parents: list[StrictStr] | None = None
    light_document_output: StrictBool | None = None
    upsert_context: UpsertSyncType | None = None
    # `async` is a Python keyword: read it from the raw body instead.


class ParentsBody(_Body):
    parents: list[StrictStr]
    parent_id: StrictStr | None = None
