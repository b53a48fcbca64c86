"""The write tools of the MCP server: upsert text, upload a file, delete a document, create a knowledge base. Writes
of documents go through the durable queue (``DocumentService.upsert_async``) and return a job handle that
``get_indexing_status`` follows; the same permission checks as the REST doors' writes (``scope.require_write``)."""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from alexandria.api.mcp import models as m
from alexandria.api.mcp import render, scope
from alexandria.api.mcp.tools import KbId, ReadTools, kb_card, off_loop
from alexandria.ingest.chunkers import Section
from alexandria.ingest.parsers import MIME_TYPES, ParseFailed, UnsupportedFileType, extension_of, parse_file
from alexandria.services.access import AccessDenied, AccessService
from alexandria.services.documents import UpsertRequest

WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
DELETE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
CREATE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
WRITE_TOOL_NAMES = ("upsert_document", "upload_file", "delete_document", "create_knowledge_base")

Tags = Annotated[list[str] | None, Field(description="Tags, usable in search filters (tags_in, tags_not).")]
NewDocId = Annotated[
    str | None, Field(description="The document's id; an existing id replaces that document (default: a new id).")
]


class WriteTools:
    def __init__(self, reads: ReadTools) -> None:
        self.reads = reads
        self.core = reads.core

    def register(self, server: MCPServer[Any]) -> None:
        server.add_tool(self.upsert_document, title="Upsert a document", annotations=WRITE, structured_output=True)
        server.add_tool(self.upload_file, title="Upload a file", annotations=WRITE, structured_output=True)
        server.add_tool(self.delete_document, title="Delete a document", annotations=DELETE, structured_output=True)
        server.add_tool(
            self.create_knowledge_base, title="Create a knowledge base", annotations=CREATE, structured_output=True
        )

    def _queue(
        self,
        knowledge_base_id: str,
        document_id: str | None,
        text: str,
        title: str | None,
        source_url: str | None,
        tags: list[str] | None,
        mime_type: str,
    ) -> m.WriteResult:
        who, space, ds = self.reads.kb(knowledge_base_id)
        scope.require_write(who, space, ds)
        self.core.rate_limits.check_upsert(who)
        doc_id = document_id or f"mcp-{uuid.uuid4().hex}"
        req = UpsertRequest(
            document_id=doc_id,
            section=Section(None, text, ()),
            title=title,
            mime_type=mime_type,
            source_url=source_url,
            timestamp=None,
            tags=tuple(tags or ()),
            parents=None,
            parent_id=None,
        )
        result = self.core.documents.upsert_async(ds, req, int(time.time() * 1000))
        job = result.job
        return m.WriteResult(
            knowledge_base_id=ds.sid,
            document_id=doc_id,
            job_id=str(job.id) if job is not None else None,
            status="queued" if job is not None else "unchanged",
        )

    async def upsert_document(
        self,
        knowledge_base_id: KbId,
        text: Annotated[str, Field(min_length=1, description="The document's full text (plain text or Markdown).")],
        title: str | None = None,
        document_id: NewDocId = None,
        source_url: Annotated[str | None, Field(description="Where the document comes from (http or https).")] = None,
        tags: Tags = None,
    ) -> Annotated[CallToolResult, m.WriteResult]:
        """Add or replace a text document. It is stored at once and indexed in the background: the result's job_id
        is a handle for get_indexing_status; the document is searchable once the job is done."""
        if source_url is not None and not source_url.startswith(("http://", "https://")):
            raise ToolError("source_url must be an http or https URL.")
        out = await off_loop(self._queue, knowledge_base_id, document_id, text, title, source_url, tags, "text/plain")
        return render.result(out, render.write(out))

    async def upload_file(
        self,
        knowledge_base_id: KbId,
        filename: Annotated[str, Field(description="The file's name; its extension picks the parser.")],
        content_base64: Annotated[str, Field(description="The file's bytes, base64-encoded.")],
        title: str | None = None,
        document_id: NewDocId = None,
        tags: Tags = None,
    ) -> Annotated[CallToolResult, m.WriteResult]:
        """Upload a file (pdf, docx, xlsx, html, csv, txt, md, ...): parsed to text now, indexed in the background
        (poll get_indexing_status with the job_id)."""
        try:
            data = base64.b64decode(content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ToolError("content_base64 is not valid base64.") from exc
        try:
            text = await off_loop(parse_file, filename, data)
        except (UnsupportedFileType, ParseFailed) as exc:
            raise ToolError(f"Cannot read {filename!r}: {exc}") from exc
        if not text.strip():
            raise ToolError(f"{filename!r} holds no text.")
        mime = MIME_TYPES.get(extension_of(filename), "text/plain")
        out = await off_loop(self._queue, knowledge_base_id, document_id, text, title or filename, None, tags, mime)
        return render.result(out, render.write(out))

    async def delete_document(
        self, knowledge_base_id: KbId, document_id: Annotated[str, Field(description="The document to delete.")]
    ) -> Annotated[CallToolResult, m.WriteResult]:
        """Delete a document from a knowledge base (at once: nothing to poll)."""

        def run() -> m.WriteResult:
            who, space, ds = self.reads.kb(knowledge_base_id)
            scope.require_write(who, space, ds)
            deleted = self.core.documents.delete(ds, document_id)
            return m.WriteResult(
                knowledge_base_id=ds.sid,
                document_id=document_id,
                job_id=None,
                status="deleted" if deleted else "not_found",
            )

        out = await off_loop(run)
        return render.result(out, render.write(out))

    async def create_knowledge_base(
        self,
        name: Annotated[str, Field(description="1-128 letters, digits, spaces, '.', '_' or '-'; unique.")],
        description: str | None = None,
        space: Annotated[
            str | None, Field(description="Space id or name (default: the workspace's global space).")
        ] = None,
    ) -> Annotated[CallToolResult, m.KnowledgeBase]:
        """Create a knowledge base (admin keys of the space only; not with a key bound to one knowledge base)."""

        def run() -> m.KnowledgeBase:
            who = self.reads.who()
            try:
                AccessService.require_unbound(who)
                where = (
                    self.core.access.space(who, self.core.catalog.space_by_name_or_id(who.workspace, space).sid)
                    if space is not None
                    else self.core.catalog.global_space(who.workspace)
                )
                AccessService.require_admin(who, where, "not_admin")
            except AccessDenied as exc:
                raise scope.McpAccessError(
                    "This key cannot create a knowledge base there (it needs an admin key of the space, "
                    "not bound to one knowledge base)."
                ) from exc
            ds = self.core.catalog.create_data_source(who.workspace, name, space=where, description=description)
            return kb_card(who, where, ds)

        out = await off_loop(run)
        return render.result(out, f"created knowledge base {out.id} {out.name!r} in space {out.space}")
