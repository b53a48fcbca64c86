"""Dify's dataset metadata fields and document metadata values, knowledge tags, and batch status changes
(enable, disable, archive, un_archive) of documents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from alexandria.domain.dify import DatasetTag, MetadataField
from alexandria.domain.models import DataSource, Document, Workspace
from alexandria.errors import AlreadyExists, InvalidRequest, NotFound
from alexandria.services.dify_segments import DifySegments
from alexandria.storage.base import CatalogStore, DifyStore

BUILT_IN_FIELDS: tuple[tuple[str, str], ...] = (
    ("document_name", "string"),
    ("uploader", "string"),
    ("upload_date", "time"),
    ("last_update_date", "time"),
    ("source", "string"),
)
BUILT_IN_NAMES = frozenset(name for name, _ in BUILT_IN_FIELDS)
FIELD_TYPES = ("string", "number", "time")
STATUS_ACTIONS = ("enable", "disable", "archive", "un_archive")


def invalid(message: str, code: str = "invalid_param") -> InvalidRequest:
    return InvalidRequest(message, code=code)


def built_in_values(doc: Document) -> dict[str, Any]:
    return {
        "document_name": doc.title,
        "uploader": "api",
        "upload_date": doc.created / 1000,
        "last_update_date": doc.updated / 1000,
        "source": "file_upload",
    }


class MetaStores(CatalogStore, DifyStore, Protocol):
    """The store roles ``DifyMeta`` uses."""


class DifyMeta:
    def __init__(self, store: MetaStores, segments: DifySegments) -> None:
        self.store = store
        self.segments = segments

    # --- metadata fields -----------------------------------------------------------------------------------------
    def fields(self, ds: DataSource) -> list[tuple[MetadataField, int]]:
        return self.store.list_metadata_fields(ds)

    def field(self, ds: DataSource, field_id: str) -> MetadataField:
        for f, _ in self.store.list_metadata_fields(ds):
            if f.uuid == field_id:
                return f
        raise NotFound("Metadata not found.", code="metadata_not_found")

    @staticmethod
    def _check_name(name: object) -> str:
        if not isinstance(name, str) or not name.strip():
            raise invalid("Metadata name is required.")
        if len(name) > 255:
            raise invalid("Metadata name cannot exceed 255 characters.")
        if name in BUILT_IN_NAMES:
            raise invalid("Metadata name already exists in Built-in fields.")
        return name

    def create_field(self, ds: DataSource, body: Mapping[str, Any]) -> MetadataField:
        name = self._check_name(body.get("name"))
        type_ = body.get("type")
        if type_ not in FIELD_TYPES:
            raise invalid(f"Invalid metadata type: {type_}. Must be one of {list(FIELD_TYPES)}.")
        try:
            return self.store.create_metadata_field(ds, name, str(type_))
        except AlreadyExists as exc:
            raise invalid("Metadata name already exists.") from exc

    def rename_field(self, ds: DataSource, field_id: str, body: Mapping[str, Any]) -> MetadataField:
        field = self.field(ds, field_id)
        name = self._check_name(body.get("name"))
        try:
            return self.store.rename_metadata_field(ds, field, name)
        except AlreadyExists as exc:
            raise invalid("Metadata name already exists.") from exc

    def delete_field(self, ds: DataSource, field_id: str) -> None:
        self.store.delete_metadata_field(ds, self.field(ds, field_id))

    def set_built_in(self, ds: DataSource, enabled: bool) -> DataSource:
        ds = self.store.update_data_source(ds, ds.name, ds.description, {**ds.dify, "built_in_field_enabled": enabled})
        docs, _ = self.store.list_dify_documents(ds, None, None, 1_000_000, 0)
        for doc in docs:
            values = {k: v for k, v in doc.doc_metadata.items() if k not in BUILT_IN_NAMES}
            if enabled:
                values |= built_in_values(doc)
            self.store.set_doc_metadata(doc.pk, values)
        return ds

    def update_documents_metadata(self, ds: DataSource, operations: object) -> None:
        """Dify's ``POST /documents/metadata``: per document, replace (or with ``partial_update`` merge) its values.
        Every operation is checked before any is applied, so a bad one changes nothing."""
        if not isinstance(operations, list):
            raise invalid("operation_data must be a list.")
        by_id = {f.uuid: f for f, _ in self.store.list_metadata_fields(ds)}
        plan: list[tuple[Document, dict[str, Any], bool]] = []
        for op in operations:
            if not isinstance(op, Mapping) or not isinstance(op.get("document_id"), str):
                raise invalid("Each operation needs a document_id.")
            doc = self.store.get_document_by_uuid(ds, op["document_id"])
            if doc is None:
                raise invalid("Document not found.")
            items = op.get("metadata_list")
            if not isinstance(items, list):
                raise invalid("metadata_list must be a list.")
            values: dict[str, Any] = {}
            for item in items:
                if not isinstance(item, Mapping):
                    raise invalid("Each metadata item must be an object with id, name and value.")
                field = by_id.get(str(item.get("id")))
                if field is None:
                    raise invalid(f"Metadata {item.get('id')!r} not found in this dataset.")
                value = item.get("value")
                if (value is not None and not isinstance(value, str | int | float)) or isinstance(value, bool):
                    raise invalid(f"Invalid value for metadata {field.name!r}: must be a string, a number or null.")
                if field.type in ("number", "time") and isinstance(value, str):
                    try:
                        value = float(value) if "." in value or "e" in value.lower() else int(value)
                    except ValueError as exc:
                        raise invalid(
                            f"Metadata {field.name!r} is a {field.type} field: {value!r} is no number."
                        ) from exc
                values[field.name] = value
            plan.append((doc, values, bool(op.get("partial_update"))))
        for doc, values, partial in plan:
            kept = {k: v for k, v in doc.doc_metadata.items() if k in BUILT_IN_NAMES}
            merged = {**doc.doc_metadata, **values} if partial else {**kept, **values}
            if ds.dify.get("built_in_field_enabled"):
                merged |= built_in_values(doc)
            self.store.set_doc_metadata(doc.pk, merged)

    # --- tags ----------------------------------------------------------------------------------------------------
    def tags(self, workspace: Workspace) -> list[DatasetTag]:
        return self.store.list_tags(workspace.id)

    def dataset_tags(self, ds: DataSource) -> list[DatasetTag]:
        """The tags bound to a dataset."""
        return self.store.tags_of_data_sources([ds.id])[ds.id]

    def tag(self, workspace: Workspace, tag_id: object) -> DatasetTag:
        tag = self.store.get_tag(workspace.id, str(tag_id)) if isinstance(tag_id, str) else None
        if tag is None:
            raise NotFound("Tag not found", code="tag_not_found")
        return tag

    @staticmethod
    def _tag_name(name: object) -> str:
        if not isinstance(name, str) or not 1 <= len(name) <= 50:
            raise invalid("Tag name must be between 1 and 50 characters.")
        return name

    def create_tag(self, workspace: Workspace, name: object) -> DatasetTag:
        try:
            return self.store.create_tag(workspace.id, self._tag_name(name))
        except AlreadyExists as exc:
            raise invalid("Tag name already exists") from exc

    def rename_tag(self, workspace: Workspace, tag_id: object, name: object) -> DatasetTag:
        tag = self.tag(workspace, tag_id)
        try:
            return self.store.rename_tag(tag, self._tag_name(name))
        except AlreadyExists as exc:
            raise invalid("Tag name already exists") from exc

    def delete_tag(self, workspace: Workspace, tag_id: object) -> None:
        self.store.delete_tag(self.tag(workspace, tag_id))

    def bind(self, workspace: Workspace, ds: DataSource, tag_ids: Sequence[str], bind: bool) -> None:
        """Bind (or unbind) tags to a dataset; unknown tag ids are ignored, as in Dify."""
        known = {t.uuid: t.pk for t in self.store.list_tags(workspace.id)}
        pks = [known[t] for t in tag_ids if t in known]
        if bind:
            self.store.bind_tags(ds.id, pks)
        else:
            self.store.unbind_tags(ds.id, pks)

    # --- batch status --------------------------------------------------------------------------------------------
    def set_status(self, ds: DataSource, action: str, document_ids: Sequence[str]) -> None:
        if action not in STATUS_ACTIONS:
            raise invalid(f"Invalid action: {action}. Must be one of {list(STATUS_ACTIONS)}", code="invalid_action")
        docs = [d for d in (self.store.get_document_by_uuid(ds, i) for i in document_ids) if d is not None]
        if action == "disable":
            for doc in docs:
                if doc.enabled and doc.index_state != "indexed":
                    raise invalid(f"Document: {doc.title} is not completed.", code="invalid_action")
        for doc in docs:
            if action == "enable" and not doc.enabled:
                self.store.set_document_flags(ds, doc.pk, enabled=True)
            elif action == "disable" and doc.enabled:
                self.store.set_document_flags(ds, doc.pk, enabled=False)
            elif action == "archive" and not doc.archived:
                self.store.set_document_flags(ds, doc.pk, archived=True)
            elif action == "un_archive" and doc.archived:
                self.store.set_document_flags(ds, doc.pk, archived=False)
            else:
                continue  # already in that state: skipped, as Dify does
            if doc.index_state == "indexed":
                self.segments.sync_chunks(ds, doc)
