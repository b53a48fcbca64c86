"""Dify's knowledge model over the core: datasets (data sources in the global space), documents processed by the
durable queue through Dify's pipeline states, and batch status changes. Segments live in ``dify_segments``,
retrieval in ``dify_retrieval``. Knows nothing of HTTP: the Dify dialect renders what this returns."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from alexandria.config import Settings
from alexandria.domain.dify import RE_SEGMENT, DatasetCounts, UploadedFile, reusable_by_title
from alexandria.domain.dify import display_status as display_status  # the Dify dialect renders it from here
from alexandria.domain.jobs import Job
from alexandria.domain.models import DataSource, Document, SpaceKind, Workspace
from alexandria.errors import AlreadyExists, InvalidRequest, NotFound, PermissionDenied
from alexandria.ingest import dify_rules, parsers
from alexandria.ingest.base import Vectors
from alexandria.ingest.dify_rules import ProcessRule, ProcessRuleError
from alexandria.ingest.hashing import chunk_hash
from alexandria.services.catalog import CatalogService
from alexandria.services.dify_meta import built_in_values
from alexandria.services.dify_segments import plan_segments
from alexandria.services.embedders import EmbedderRegistry
from alexandria.services.jobs import JobService
from alexandria.storage.base import CatalogStore, DifyStore, DocumentStore, DocumentWrite

DOC_FORMS = ("text_model", "hierarchical_model", "qa_model")
INDEXING_TECHNIQUES = ("high_quality", "economy")
DEFAULT_RETRIEVAL_MODEL: dict[str, Any] = {
    "search_method": "semantic_search",
    "reranking_enable": False,
    "reranking_mode": None,
    "reranking_model": {"reranking_provider_name": "", "reranking_model_name": ""},
    "weights": None,
    "top_k": 4,
    "score_threshold_enabled": False,
    "score_threshold": None,
}
EMBEDDING_PROVIDER = "alexandria"


def now_s() -> int:
    return int(time.time())


def new_batch() -> str:
    """Dify's batch id: ``YYYYmmddHHMMSS`` + 6 random digits."""
    return time.strftime("%Y%m%d%H%M%S") + str(100000 + secrets.randbelow(900000))


def invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_param")


@dataclass(frozen=True)
class DocumentOptions:
    """What create/update-by-text and by-file take besides the content (already validated)."""

    process_rule: ProcessRule | None = None  # None: the dataset's latest rule, else automatic
    doc_form: str | None = None
    doc_language: str = "English"
    indexing_technique: str | None = None
    retrieval_model: dict[str, Any] | None = None


@dataclass(frozen=True)
class FileUpload:
    filename: str
    data: bytes


class DifyStores(CatalogStore, DocumentStore, DifyStore, Protocol):
    """The store roles ``DifyService`` uses."""


class DifyService:
    def __init__(
        self,
        store: DifyStores,
        embedders: EmbedderRegistry,
        settings: Settings,
        jobs: JobService,
        catalog: CatalogService,
    ) -> None:
        self.store = store
        self.embedders = embedders
        self.settings = settings
        self.jobs = jobs
        self.catalog = catalog

    # --- datasets ------------------------------------------------------------------------------------------------
    def dataset(self, workspace: Workspace, dataset_id: str) -> DataSource:
        ds = self.store.get_data_source_by_uuid(workspace.id, dataset_id)
        if ds is None:
            raise NotFound("Dataset not found.", code="dataset_not_found")
        return ds

    def create_dataset(self, workspace: Workspace, body: Mapping[str, Any]) -> DataSource:
        name = body["name"]
        technique = body.get("indexing_technique")
        dify = {
            "indexing_technique": technique,
            "permission": body.get("permission") or "only_me",
            "provider": body.get("provider") or "vendor",
            "retrieval_model": self._retrieval_model(body.get("retrieval_model")),
            "embedding_model_requested": body.get("embedding_model"),
            "summary_index_setting": body.get("summary_index_setting"),
            "doc_form": None,
            "built_in_field_enabled": False,
            "enable_api": True,
        }
        if dify["provider"] == "external":
            raise invalid("External datasets are not supported.")
        if self.store.get_data_source(workspace.id, name) is not None:
            raise AlreadyExists(
                "The dataset name already exists. Please modify your dataset name.", code="dataset_name_duplicate"
            )
        try:
            return self.catalog.create_data_source(
                workspace,
                name,
                description=body.get("description") or "",
                embedder=self.embedders.from_model_name(body.get("embedding_model")),
                check_name=False,
                dify=dify,
            )
        except AlreadyExists as exc:
            raise AlreadyExists(
                "The dataset name already exists. Please modify your dataset name.", code="dataset_name_duplicate"
            ) from exc

    @staticmethod
    def _retrieval_model(value: object) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise invalid("retrieval_model must be an object.")
        out = {**DEFAULT_RETRIEVAL_MODEL, **dict(value)}
        if out["search_method"] not in ("semantic_search", "full_text_search", "hybrid_search", "keyword_search"):
            raise invalid(f"Invalid search_method: {out['search_method']}")
        return out

    def list_datasets(
        self, workspace: Workspace, keyword: str | None, tag_ids: Sequence[str], include_all: bool
    ) -> list[DataSource]:
        """The workspace's datasets (data sources of its global space and its regular spaces; managed ones
        excluded), newest first, filtered by name and tags."""
        del include_all  # a key acts as the workspace owner: it sees every dataset anyway
        spaces = {s.id: s for s in self.store.list_spaces(workspace.id)}
        found = [
            ds
            for ds in self.store.list_data_sources(workspace.id, None)
            if ds.space_id in spaces and spaces[ds.space_id].kind is not SpaceKind.SYSTEM
        ]
        if keyword:
            found = [ds for ds in found if keyword.lower() in ds.name.lower()]
        if tag_ids:
            tags = self.store.tags_of_data_sources([ds.id for ds in found])
            wanted = set(tag_ids)
            found = [ds for ds in found if wanted & {t.uuid for t in tags[ds.id]}]
        return sorted(found, key=lambda ds: (-ds.created_at, ds.id))

    def update_dataset(self, ds: DataSource, body: Mapping[str, Any]) -> DataSource:
        dify = dict(ds.dify)
        name = ds.name
        description = ds.description
        if "name" in body and body["name"] is not None:
            name = str(body["name"])
        if "description" in body:
            description = body["description"]
        for key in ("indexing_technique", "permission", "external_retrieval_model"):
            if body.get(key) is not None:
                dify[key] = body[key]
        # Dify keeps the account ids of [{user_id}]: set with permission partial_members, cleared by the others
        members = body.get("partial_member_list")
        if body.get("permission") == "partial_members" and members:
            if not isinstance(members, list) or not all(
                isinstance(m, Mapping) and isinstance(m.get("user_id"), str) for m in members
            ):
                raise invalid("partial_member_list must be a list of {user_id}.")
            dify["partial_member_list"] = [m["user_id"] for m in members]
        elif body.get("permission") in ("only_me", "all_team_members"):
            dify["partial_member_list"] = []
        if body.get("retrieval_model") is not None:
            dify["retrieval_model"] = self._retrieval_model(body["retrieval_model"])
        if body.get("embedding_model") is not None:
            dify["embedding_model_requested"] = body["embedding_model"]
        if name != ds.name:
            other = self.store.get_data_source(ds.workspace_id, name)
            if other is not None and other.id != ds.id:
                raise invalid("Dataset name already exists")
        try:
            return self.store.update_data_source(ds, name, description, dify)
        except AlreadyExists as exc:
            raise invalid("Dataset name already exists") from exc

    def delete_dataset(self, ds: DataSource) -> None:
        self.store.delete_data_source(ds)

    def embedding_model_name(self, ds: DataSource) -> str:
        return self.embedders.get(ds.embedder).name

    def counts(self, ds: DataSource) -> DatasetCounts:
        """The dataset's document and word counts (as Dify's dataset answer shows them)."""
        return self.store.data_source_counts([ds.id])[ds.id]

    # --- documents -----------------------------------------------------------------------------------------------
    def document(self, ds: DataSource, document_id: str, message: str = "Document not found.") -> Document:
        doc = self.store.get_document_by_uuid(ds, document_id)
        if doc is None:
            raise NotFound(message, code="document_not_found")
        return doc

    def _prepare(
        self, ds: DataSource, opts: DocumentOptions, *, by_file: bool, updating: Document | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any], ProcessRule]:
        """Dify's checks for a document write: the dataset's new settings (those the first document fixes and the
        process rule; None if unchanged), the document's processing record and its rule. Writes nothing: the
        caller validates the rest of the request, then saves the settings (``_save_settings``) and the document."""
        dify = dict(ds.dify)
        if dify.get("provider") == "external":
            raise invalid("External datasets are not supported.")
        doc_form = opts.doc_form
        if doc_form is None:
            doc_form = (updating.dify or {}).get("doc_form") if updating else None
            if updating is None and not by_file:
                doc_form = "text_model"  # create-by-text does not default to the dataset's doc_form (§2.2)
            doc_form = doc_form or dify.get("doc_form") or "text_model"
        elif doc_form not in DOC_FORMS:
            raise invalid("Invalid doc_form.")
        if doc_form == "qa_model":
            raise invalid(
                "doc_form qa_model is not supported: it needs an LLM to generate question/answer pairs, and "
                "Alexandria runs no LLM. Use text_model or hierarchical_model."
            )
        if dify.get("doc_form") and dify["doc_form"] != doc_form:
            raise invalid("doc_form is different from the dataset doc_form.")
        technique = opts.indexing_technique or dify.get("indexing_technique")
        if technique is None:
            raise invalid("indexing_technique is required.")
        if technique not in INDEXING_TECHNIQUES:
            raise invalid(f"Invalid indexing_technique: {technique}")
        rule = opts.process_rule
        if rule is None and updating is not None and updating.dify and updating.dify.get("process_rule"):
            rule = dify_rules.parse_process_rule(updating.dify["process_rule"])
        if rule is None and dify.get("process_rule"):
            rule = dify_rules.parse_process_rule(dify["process_rule"])
        if rule is None:
            rule = dify_rules.parse_process_rule({"mode": "automatic"})
        if doc_form == "hierarchical_model" and rule.mode != "hierarchical":
            raise invalid("The hierarchical_model doc_form needs process_rule mode 'hierarchical'.")
        if rule.mode == "hierarchical" and doc_form != "hierarchical_model":
            raise invalid("process_rule mode 'hierarchical' needs doc_form 'hierarchical_model'.")
        changed = False
        if not dify.get("indexing_technique"):
            dify["indexing_technique"] = technique
            dify["retrieval_model"] = self._retrieval_model(opts.retrieval_model) or dict(DEFAULT_RETRIEVAL_MODEL)
            changed = True
        if not dify.get("doc_form"):
            dify["doc_form"] = doc_form
            changed = True
        rule_json = rule.to_json()
        if dify.get("process_rule") != rule_json:
            dify["process_rule"] = rule_json
            dify["process_rule_id"] = _uuid()
            changed = True
        record = {
            "doc_form": doc_form,
            "doc_language": opts.doc_language or "English",
            "process_rule": rule_json,
            "process_rule_id": dify.get("process_rule_id"),
            "indexing_technique": technique,
        }
        return (dify if changed else None), record, rule

    def _save_settings(self, ds: DataSource, settings: dict[str, Any] | None) -> DataSource:
        """The dataset with the settings ``_prepare`` decided saved (once the whole request is valid)."""
        return ds if settings is None else self.store.update_data_source(ds, ds.name, ds.description, settings)

    def create_by_text(
        self, ds: DataSource, name: str, text: str, opts: DocumentOptions
    ) -> tuple[DataSource, Document, str]:
        settings, record, _ = self._prepare(ds, opts, by_file=False, updating=None)
        self._check_text(text)
        ds = self._save_settings(ds, settings)
        document_id = self._document_id_for(ds, name)
        file = {"id": _uuid(), "name": name[:200], "size": len(text.encode()), "extension": "txt",
                "mime_type": "text/plain", "created_at": time.time()}  # fmt: skip
        record |= {"data_source_type": "upload_file", "file": file, "stored_file": False}
        batch = new_batch()
        doc = self._write(ds, document_id, name, text, record, batch)
        return ds, doc, batch

    def create_by_file(
        self, ds: DataSource, upload: FileUpload, opts: DocumentOptions
    ) -> tuple[DataSource, Document, str]:
        settings, record, _ = self._prepare(ds, opts, by_file=True, updating=None)
        self._check_upload(upload)
        ds = self._save_settings(ds, settings)
        file = self._save_file(ds, upload)
        document_id = self._document_id_for(ds, upload.filename)
        record |= {"data_source_type": "upload_file", "file": file, "stored_file": True}
        batch = new_batch()
        doc = self._write(ds, document_id, upload.filename, "", record, batch)
        return ds, doc, batch

    def update_by_text(
        self, ds: DataSource, doc: Document, name: str | None, text: str | None, opts: DocumentOptions
    ) -> tuple[Document, str]:
        self._check_available(doc)
        if text is not None and name is None:
            raise invalid("name is required when text is provided")
        settings, record, _ = self._prepare(ds, opts, by_file=False, updating=doc)
        if text is not None:
            self._check_text(text)
        ds = self._save_settings(ds, settings)
        old = doc.dify or {}
        stored = self.store.get_document(ds, doc.document_id, with_text=True)
        title = name if name is not None else doc.title
        if text is None:  # re-process the stored content (a new name or rule)
            record |= {k: old[k] for k in ("data_source_type", "file", "stored_file") if k in old}
            content = "" if old.get("stored_file") else (stored.text or "" if stored else "")
        else:
            file = {"id": _uuid(), "name": title[:200], "size": len(text.encode()), "extension": "txt",
                    "mime_type": "text/plain", "created_at": time.time()}  # fmt: skip
            record |= {"data_source_type": "upload_file", "file": file, "stored_file": False}
            content = text
        updated = self._write(ds, doc.document_id, title, content, record, doc.batch or new_batch())
        return updated, updated.batch or ""

    def update_by_file(
        self, ds: DataSource, doc: Document, upload: FileUpload | None, opts: DocumentOptions
    ) -> tuple[Document, str]:
        self._check_available(doc)
        opts = replace(opts, indexing_technique=ds.dify.get("indexing_technique") or opts.indexing_technique)
        settings, record, _ = self._prepare(ds, opts, by_file=True, updating=doc)
        old = doc.dify or {}
        if upload is None and not old:
            raise invalid("Document has no file to re-process.")
        if upload is not None:
            self._check_upload(upload)
        ds = self._save_settings(ds, settings)
        if upload is None:
            record |= {k: old[k] for k in ("data_source_type", "file", "stored_file") if k in old}
            title = doc.title
            stored = self.store.get_document(ds, doc.document_id, with_text=True)
            content = "" if old.get("stored_file") else (stored.text or "" if stored else "")
        else:
            record |= {"data_source_type": "upload_file", "file": self._save_file(ds, upload), "stored_file": True}
            title, content = upload.filename, ""
        updated = self._write(ds, doc.document_id, title, content, record, doc.batch or new_batch())
        return updated, updated.batch or ""

    def _document_id_for(self, ds: DataSource, title: str) -> str:
        """A create reuses the document of the same name Dify would (its id), else makes a new one."""
        existing = reusable_by_title(self.store.documents_titled(ds, title))
        return existing.document_id if existing is not None else _uuid()

    @staticmethod
    def _check_available(doc: Document) -> None:
        if display_status(doc) != "available":
            raise invalid("Document is not available")

    def _check_upload(self, upload: FileUpload) -> None:
        """An uploaded file's type and size (before anything of the request is written)."""
        if parsers.extension_of(upload.filename) not in parsers.SUPPORTED_EXTENSIONS:
            raise InvalidRequest("File type not allowed.", code="unsupported_file_type")
        limit = int(self.settings.upload_file_size_limit_mb * 1024 * 1024)
        if len(upload.data) > limit:
            raise InvalidRequest(
                f"File size exceeded. {upload.filename} is {len(upload.data)} bytes; the limit is "
                f"{self.settings.upload_file_size_limit_mb:g} MB.",
                code="file_too_large",
            )

    def _check_text(self, text: str) -> None:
        """A document text's size (before anything of the request is written)."""
        limit = int(self.settings.max_document_mb * 1024 * 1024)
        if len(text) > limit:
            raise InvalidRequest(f"The text is larger than {self.settings.max_document_mb:g} MB.", code="invalid_param")

    def _save_file(self, ds: DataSource, upload: FileUpload) -> dict[str, Any]:
        return self.save_upload(ds.workspace_id, upload)

    def save_upload(self, workspace_id: int, upload: FileUpload) -> dict[str, Any]:
        """Stores an uploaded file of the workspace after Dify's type and size checks; its ``file`` record."""
        self._check_upload(upload)
        ext = parsers.extension_of(upload.filename)
        mime = parsers.MIME_TYPES.get(ext, "application/octet-stream")
        f = self.store.save_file(workspace_id, upload.filename, ext, mime, upload.data)
        return {"id": f.uuid, "name": f.name, "size": f.size, "extension": f.extension, "mime_type": f.mime_type,
                "created_at": f.created_at / 1000}  # fmt: skip

    def uploaded_file(self, workspace_id: int, file_id: str) -> tuple[UploadedFile, bytes] | None:
        """An uploaded file of the workspace and its bytes."""
        return self.store.get_file(workspace_id, file_id)

    def instance_secret(self, name: str) -> str:
        """This instance's secret ``name`` (made on first use, the same for every process on the store)."""
        return self.store.instance_secret(name)

    def _write(
        self,
        ds: DataSource,
        document_id: str,
        title: str,
        text: str,
        record: dict[str, Any],
        batch: str,
    ) -> Document:
        """Store a document's content and processing record in ``batch`` (an update keeps the document's batch) and
        queue its index job; a rewritten document's segments are re-segmented by it."""
        now_ms = int(time.time() * 1000)
        self._check_text(text)
        section = json.dumps({"prefix": None, "content": text, "sections": []}, ensure_ascii=False)
        identity = [document_id, title, text, record.get("file", {}).get("id"), record["process_rule"], now_ms]
        identity += [record["doc_form"], ds.embedder]
        write = DocumentWrite(
            document_id=document_id,
            title=title,
            mime_type=str(record.get("file", {}).get("mime_type") or "text/plain"),
            source_url=None,
            timestamp=now_ms,
            tags=(f"title:{title}",),
            parents=(document_id,),
            parent_id=None,
            section_json=section,
            text=text,
            hash=chunk_hash(json.dumps(identity, ensure_ascii=False, default=str)),
            token_count=0,
        )
        record = {**record, "created_from": "api", "error": None, "word_count": 0, "tokens": 0,
                  "processing_started_at": None, "parsing_completed_at": None, "cleaning_completed_at": None,
                  "splitting_completed_at": None, "completed_at": None, "stopped_at": None,
                  "indexing_latency": None, "queued_at": now_ms / 1000}  # fmt: skip
        doc, _job = self.store.write_dify_document(ds, write, record, batch, now_ms, segment_status=RE_SEGMENT)
        if ds.dify.get("built_in_field_enabled"):  # Dify fills the built-in fields of every new document
            values = {**doc.doc_metadata, **built_in_values(doc)}
            self.store.set_doc_metadata(doc.pk, values)
            doc = replace(doc, doc_metadata=values)
        self.jobs.notify()
        return doc

    def list_documents(
        self, ds: DataSource, keyword: str | None, status: str | None, page: int, limit: int
    ) -> tuple[list[Document], int]:
        size = min(limit, 100)
        return self.store.list_dify_documents(ds, keyword, status, size, (page - 1) * size)

    def delete_document(self, ds: DataSource, doc: Document) -> None:
        if doc.archived:
            raise ArchivedDocument("The archived document is not editable.")
        self.store.delete_document(ds, doc.document_id)

    def batch_documents(self, ds: DataSource, batch: str) -> list[Document]:
        docs = self.store.documents_in_batch(ds, batch)
        if not docs:
            raise NotFound("Documents not found.", code="documents_not_found")
        return docs

    # --- the index job of a Dify document: parsing -> splitting -> indexing -> completed ------------------------
    def run_index_jobs(self, jobs: Sequence[Job]) -> list[BaseException | None]:
        """The ``index_dify_document`` job handler: each job runs Dify's pipeline on its document (an obsolete job,
        whose document is gone, rewritten or no longer Dify's, does nothing). Returns each job's error or None."""
        out: list[BaseException | None] = []
        for job in jobs:
            try:
                ds = None if job.data_source_id is None else self.store.get_data_source_by_id(job.data_source_id)
                found = None if ds is None else self.store.document_section(ds, job.payload_str("document_id"))
                if ds is not None and found is not None and found[3] is not None:
                    self.run_index_job(ds, job, found[3])
                out.append(None)
            except Exception as exc:
                out.append(exc)
        return out

    def run_index_job(self, ds: DataSource, job: Job, record: Mapping[str, Any]) -> None:
        document_id, doc_hash = job.payload_str("document_id"), job.payload_str("hash")
        started = time.time()

        def step(state: str, **updates: object) -> None:
            if not self.store.set_index_progress(ds, document_id, doc_hash, state, updates):
                raise _Obsolete

        try:
            step("parsing", processing_started_at=now_s())
            text = self._document_text(ds, document_id, record)
            step("splitting", parsing_completed_at=now_s())
            rule = dify_rules.parse_process_rule(record["process_rule"])
            dify_rules.check_segment_length(rule, self.settings.dify_max_segmentation_tokens)
            embedder = self.embedders.get(ds.embedder)
            segments = plan_segments(text, rule, record["doc_form"], embedder.tokenizer.count)
            word_count = sum(s.word_count for s in segments)
            step("indexing", cleaning_completed_at=now_s(), splitting_completed_at=now_s(), word_count=word_count)
            units = _units_of(segments)
            vectors = self._embed(ds, units)
            tokens = [embedder.tokenizer.count(u) for u in units]
            done = {"completed_at": now_s(), "tokens": sum(s.tokens for s in segments), "word_count": word_count,
                    "indexing_latency": round(time.time() - started, 3), "error": None}  # fmt: skip
            parsed = text if record.get("stored_file") else None
            self.store.index_dify_document(ds, job, segments, vectors, tokens, done, int(time.time() * 1000), parsed)
        except _Obsolete:
            return
        except (ProcessRuleError, parsers.ParseFailed, parsers.UnsupportedFileType) as exc:
            raise InvalidRequest(str(exc)) from exc  # permanent: the document ends in "error" with this message

    def _document_text(self, ds: DataSource, document_id: str, record: Mapping[str, Any]) -> str:
        if record.get("stored_file"):
            file = record.get("file") or {}
            data = self.store.file_data(str(file.get("id")))
            if data is None:
                raise InvalidRequest("The uploaded file of this document is gone.")
            text = parsers.parse_file(str(file.get("name") or ""), data)
            return text
        found = self.store.document_section(ds, document_id)
        if found is None:
            raise _Obsolete
        section = json.loads(found[2])
        return str(section.get("content") or "")

    def _embed(self, ds: DataSource, texts: Sequence[str]) -> Vectors:
        embedder = self.embedders.writer(ds.embedder)
        if not texts:
            return np.zeros((0, ds.dim), dtype=np.float32)
        step = max(self.settings.embed_batch_size * 8, 1)
        return np.concatenate([embedder.embed(list(texts[i : i + step])) for i in range(0, len(texts), step)])


class _Obsolete(Exception):
    """The document changed or was deleted while its job ran: a newer job owns it."""


class ArchivedDocument(PermissionDenied):
    """An archived document cannot be edited or deleted (Dify's 403 ``archived_document_immutable``)."""

    code = "archived_document_immutable"


def _units_of(segments: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for s in segments:
        if s.children:
            out += [c.content for c in s.children]
        else:
            out.append(s.content)
    return out


def _uuid() -> str:
    return str(uuid.uuid4())


def indexing_status(doc: Document) -> str:
    """Dify's ``indexing_status``: waiting | parsing | splitting | indexing | completed | error."""
    return {"pending": "waiting", "indexed": "completed", "failed": "error"}.get(doc.index_state, doc.index_state)
