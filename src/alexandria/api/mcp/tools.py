"""The read tools of the MCP server: a thin dialect over the services (search, documents, tables, jobs), each call
resolving its caller and every knowledge base it names through ``scope`` (``services/access.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ResourceLink, ToolAnnotations
from pydantic import Field

from alexandria.api.mcp import models as m
from alexandria.api.mcp import render, scope
from alexandria.domain.filters import DocumentFilter, FilterSet
from alexandria.domain.models import ChunkHit, DataSource, Document, Principal, SearchMode, Space
from alexandria.domain.tables import TableColumn
from alexandria.services.core import Core
from alexandria.services.tables import TableRef

P = ParamSpec("P")
T = TypeVar("T")

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
MODES = {"hybrid": SearchMode.HYBRID, "semantic": SearchMode.VECTOR, "keyword": SearchMode.KEYWORD}
MAX_HITS = 50

KbId = Annotated[str, Field(description="A knowledge base id (or name), from list_knowledge_bases.")]
DocId = Annotated[str, Field(description="A document id, from search_knowledge or list_documents.")]


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Blocking core work on a worker thread, domain errors as tool errors."""

    def call() -> T:
        with scope.tool_errors():
            return fn(*args, **kwargs)

    return await anyio.to_thread.run_sync(call)


def kb_card(who: Principal, space: Space, ds: DataSource) -> m.KnowledgeBase:
    return m.KnowledgeBase(
        id=ds.sid,
        name=ds.name,
        description=ds.description,
        space=space.name,
        space_id=space.sid,
        dify_dataset_id=ds.uuid,
        embedder=ds.embedder,
        chunk_size=ds.chunk_size,
        managed=ds.connector_provider is not None,
        can_write=scope.writable(who, space, ds),
    )


def doc_status(doc: Document) -> m.IndexStatus:
    return "failed" if doc.index_state == "failed" else "indexed" if doc.index_state == "indexed" else "pending"


def parse_time(value: int | str | None, name: str) -> int | None:
    """Epoch milliseconds from an int or an ISO 8601 string (a date alone is midnight UTC)."""
    if value is None or isinstance(value, int):
        return value
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ToolError(f"{name} must be epoch milliseconds or an ISO 8601 date/time, not {value!r}.") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def to_filter(filters: m.SearchFilters | None) -> FilterSet:
    if filters is None:
        return FilterSet()

    def many(values: list[str] | None) -> tuple[str, ...] | None:
        return tuple(values) if values is not None else None

    return FilterSet(
        (
            DocumentFilter(
                tags_in=many(filters.tags_in),
                tags_not=many(filters.tags_not),
                parents_in=many(filters.parents_in),
                parents_not=many(filters.parents_not),
                timestamp_gt=parse_time(filters.timestamp_gt, "timestamp_gt"),
                timestamp_lt=parse_time(filters.timestamp_lt, "timestamp_lt"),
            ),
        )
    )


def columns(schema: tuple[TableColumn, ...] | None) -> list[m.Column]:
    return [
        m.Column(
            name=c.name,
            type=c.value_type,
            possible_values=list(c.possible_values) if c.possible_values is not None else None,
        )
        for c in schema or ()
    ]


class ReadTools:
    """The read tools over ``core``, for the caller whose key ``token()`` returns."""

    def __init__(self, core: Core, token: scope.TokenSource) -> None:
        self.core = core
        self.token = token

    def who(self) -> Principal:
        return scope.principal(self.core, self.token())

    def kb(self, ref: str) -> tuple[Principal, Space, DataSource]:
        who = self.who()
        space, ds = scope.knowledge_base(self.core, who, ref)
        return who, space, ds

    def register(self, server: MCPServer[Any]) -> None:
        for fn, title in (
            (self.list_knowledge_bases, "List knowledge bases"),
            (self.search_knowledge, "Search knowledge"),
            (self.grep_knowledge, "Grep knowledge for an exact string"),
            (self.list_documents, "List documents"),
            (self.read_document, "Read a document"),
            (self.get_chunk_context, "Get a chunk with its neighbours"),
            (self.list_tables, "List tables"),
            (self.query_tables, "Query tables with SQL"),
            (self.get_indexing_status, "Get indexing status"),
        ):
            server.add_tool(fn, title=title, annotations=READ, structured_output=True)

    # --- the tools -----------------------------------------------------------------------------------------------
    async def list_knowledge_bases(
        self, name_contains: Annotated[str | None, Field(description="Only names containing this.")] = None
    ) -> Annotated[CallToolResult, m.KnowledgeBaseList]:
        """The knowledge bases this key can read, with the ids every other tool takes. Call this first."""

        def run() -> m.KnowledgeBaseList:
            who = self.who()
            cards = [kb_card(who, s, ds) for s, ds in scope.visible(self.core, who)]
            if name_contains:
                cards = [c for c in cards if name_contains.lower() in c.name.lower()]
            return m.KnowledgeBaseList(knowledge_bases=cards)

        out = await off_loop(run)
        return render.result(out, render.knowledge_bases(out))

    async def search_knowledge(
        self,
        query: Annotated[str, Field(min_length=1, description="What to look for, in natural language or keywords.")],
        knowledge_base_ids: Annotated[
            list[str] | None, Field(description="Knowledge bases to search (default: every one this key can read).")
        ] = None,
        top_k: Annotated[int, Field(ge=1, le=MAX_HITS, description="How many chunks to return.")] = 8,
        mode: Annotated[
            Literal["hybrid", "semantic", "keyword"],
            Field(description="hybrid (default) fuses keyword (BM25) and semantic (embedding) ranking."),
        ] = "hybrid",
        filters: m.SearchFilters | None = None,
        max_chars_per_hit: Annotated[int, Field(ge=50, le=20_000)] = 1500,
    ) -> Annotated[CallToolResult, m.SearchResult]:
        """Search chunks of the knowledge bases, best first, each with its document id, title, source URL, position
        and per-signal scores. Use grep_knowledge for exact identifiers and read_document or get_chunk_context for
        more context; cite document_id and source_url."""

        def run() -> m.SearchResult:
            who = self.who()
            if knowledge_base_ids is None:
                targets = [ds for _, ds in scope.visible(self.core, who)]
            else:
                if not knowledge_base_ids:
                    raise ToolError("knowledge_base_ids is empty: omit it to search every knowledge base.")
                targets = [scope.knowledge_base(self.core, who, ref)[1] for ref in dict.fromkeys(knowledge_base_ids)]
            flt = to_filter(filters)
            ranked: list[tuple[DataSource, ChunkHit]] = []
            for ds in targets:
                hits = self.core.search.rank_chunks(ds, query, MODES[mode], flt, top_k)
                ranked += [(ds, h) for h in hits]
            ranked.sort(key=lambda dh: -(dh[1].score or 0.0))
            ranked = ranked[:top_k]
            docs = self.core.search.documents_by_pk([h.document_pk for _, h in ranked])
            out = []
            for ds, h in ranked:
                doc = docs.get(h.document_pk)
                if doc is None:
                    continue
                out.append(
                    m.SearchHit(
                        knowledge_base_id=ds.sid,
                        document_id=doc.document_id,
                        title=doc.title,
                        source_url=doc.source_url,
                        score=h.score,
                        scores=m.Scores(fused=h.score, keyword=h.keyword_score, semantic=h.vector_score),
                        position=m.Position(chunk_index=h.offset, chunk_count=doc.chunk_count),
                        text=h.text[:max_chars_per_hit],
                        tags=list(doc.tags),
                        timestamp=doc.timestamp,
                    )
                )
            return m.SearchResult(query=query, mode=mode, knowledge_base_ids=[ds.sid for ds in targets], hits=out)

        out = await off_loop(run)
        links: list[ResourceLink] = []
        for h in out.hits:
            if all(link.uri != render.document_uri(h.knowledge_base_id, h.document_id) for link in links):
                links.append(
                    ResourceLink(
                        type="resource_link",
                        uri=render.document_uri(h.knowledge_base_id, h.document_id),
                        name=h.document_id,
                        title=h.title,
                        mime_type="text/plain",
                    )
                )
        return render.result(out, render.search(out), links)

    async def grep_knowledge(
        self,
        pattern: Annotated[str, Field(min_length=1, max_length=1000, description="The exact string to find.")],
        knowledge_base_id: KbId,
        document_id: Annotated[str | None, Field(description="Only this document.")] = None,
        case_insensitive: bool = True,
        max_matches: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> Annotated[CallToolResult, m.GrepResult]:
        """Lines of the knowledge base's documents that contain an exact string (identifiers, error codes, names),
        with line numbers for read_document."""

        def run() -> m.GrepResult:
            _, _, ds = self.kb(knowledge_base_id)
            found = self.core.reading.grep(
                ds, pattern, case_insensitive=case_insensitive, document_id=document_id, max_matches=max_matches
            )
            lines = [
                m.GrepLine(document_id=g.document.document_id, title=g.document.title, line=g.line, text=g.text[:500])
                for g in found.matches
            ]
            return m.GrepResult(
                pattern=pattern, matches=lines, scanned_documents=found.scanned_documents, truncated=found.truncated
            )

        out = await off_loop(run)
        return render.result(out, render.grep(out))

    async def list_documents(
        self,
        knowledge_base_id: KbId,
        limit: Annotated[int, Field(ge=1, le=200)] = 50,
        offset: Annotated[int, Field(ge=0)] = 0,
    ) -> Annotated[CallToolResult, m.DocumentList]:
        """The documents of a knowledge base with their indexing status (pending, indexed or failed)."""

        def run() -> m.DocumentList:
            _, _, ds = self.kb(knowledge_base_id)
            docs, total = self.core.documents.list(ds, None, limit, offset)
            items = [
                m.DocumentInfo(
                    document_id=d.document_id,
                    title=d.title,
                    source_url=d.source_url,
                    tags=list(d.tags),
                    status=doc_status(d),
                    error=d.index_error,
                    chunks=d.chunk_count,
                    tokens=d.token_count,
                    chars=d.text_size,
                    timestamp=d.timestamp,
                )
                for d in docs
            ]
            more = offset + len(docs) < total and bool(docs)
            return m.DocumentList(
                knowledge_base_id=ds.sid, documents=items, total=total, next_offset=offset + len(docs) if more else None
            )

        out = await off_loop(run)
        return render.result(out, render.documents(out))

    async def read_document(
        self,
        knowledge_base_id: KbId,
        document_id: DocId,
        offset: Annotated[int, Field(ge=0, description="First character to read.")] = 0,
        max_chars: Annotated[int, Field(ge=1, le=100_000)] = 10_000,
        start_line: Annotated[int | None, Field(ge=1, description="Read from this line (1-based) instead.")] = None,
        end_line: Annotated[int | None, Field(ge=1, description="Last line to read (inclusive).")] = None,
    ) -> Annotated[CallToolResult, m.DocumentText]:
        """A document's text by character range (offset, max_chars) or by lines (start_line, end_line)."""

        def run() -> m.DocumentText:
            _, _, ds = self.kb(knowledge_base_id)
            r = self.core.reading.read_range(
                ds, document_id, offset=offset, max_chars=max_chars, start_line=start_line, end_line=end_line
            )
            return m.DocumentText(
                knowledge_base_id=ds.sid,
                document_id=r.document.document_id,
                title=r.document.title,
                source_url=r.document.source_url,
                text=r.text,
                offset=r.offset,
                total_chars=r.total_chars,
                total_lines=r.total_lines,
                next_offset=r.next_offset,
            )

        out = await off_loop(run)
        return render.result(out, render.document_text(out))

    async def get_chunk_context(
        self,
        knowledge_base_id: KbId,
        document_id: DocId,
        chunk_index: Annotated[int, Field(ge=0, description="position.chunk_index of a search hit.")],
        before: Annotated[int, Field(ge=0, le=20)] = 1,
        after: Annotated[int, Field(ge=0, le=20)] = 1,
    ) -> Annotated[CallToolResult, m.ChunkContext]:
        """A chunk with its neighbouring chunks, to widen the context of a search hit."""

        def run() -> m.ChunkContext:
            _, _, ds = self.kb(knowledge_base_id)
            ctx = self.core.reading.chunk_context(ds, document_id, chunk_index, before, after)
            return m.ChunkContext(
                knowledge_base_id=ds.sid,
                document_id=ctx.document.document_id,
                title=ctx.document.title,
                chunk_count=ctx.document.chunk_count,
                chunks=[m.Chunk(chunk_index=c.offset, text=c.text) for c in ctx.chunks],
            )

        out = await off_loop(run)
        return render.result(out, render.chunk_context(out))

    async def list_tables(self, knowledge_base_id: KbId) -> Annotated[CallToolResult, m.TableList]:
        """The structured tables of a knowledge base with their columns, for query_tables."""

        def run() -> m.TableList:
            _, _, ds = self.kb(knowledge_base_id)
            infos = [
                m.TableInfo(
                    table_id=t.table_id,
                    name=t.name,
                    title=t.title,
                    description=t.description,
                    columns=columns(t.schema),
                )
                for t in self.core.tables.list_all(ds)
            ]
            return m.TableList(knowledge_base_id=ds.sid, tables=infos)

        out = await off_loop(run)
        return render.result(out, render.tables(out))

    async def query_tables(
        self,
        knowledge_base_id: KbId,
        sql: Annotated[str, Field(min_length=1, description="One read-only SQLite SELECT over the tables' names.")],
        table_ids: Annotated[list[str] | None, Field(description="Tables the query uses (default: all).")] = None,
        max_rows: Annotated[int, Field(ge=1, le=1000)] = 200,
    ) -> Annotated[CallToolResult, m.QueryResult]:
        """Run one read-only, time-limited SQL query over a knowledge base's tables (see list_tables)."""
        started = time.monotonic()

        def prepare() -> Any:
            _, _, ds = self.kb(knowledge_base_id)
            ids = table_ids if table_ids is not None else [t.table_id for t in self.core.tables.list_all(ds)]
            if not ids:
                raise ToolError(f"Knowledge base `{ds.sid}` has no tables.")
            return self.core.tables.prepare_query([TableRef(ds, t) for t in ids], sql, started)

        job = await off_loop(prepare)
        with scope.tool_errors():
            result = await self.core.tables.sql_pool.run_async(job)
        rows = result.rows[:max_rows]
        out = m.QueryResult(
            columns=columns(result.columns),
            rows=rows,
            truncated=len(result.rows) > max_rows,
            elapsed_ms=(time.monotonic() - started) * 1000,
        )
        return render.result(out, render.query(out))

    async def get_indexing_status(
        self,
        knowledge_base_id: KbId,
        job_id: Annotated[str | None, Field(description="A job handle returned by a write tool.")] = None,
        document_id: Annotated[str | None, Field(description="A document, instead of a job.")] = None,
    ) -> Annotated[CallToolResult, m.IndexingStatus]:
        """Where indexing stands: of a job (from upsert_document or upload_file), of a document, or of the whole
        knowledge base (how many index jobs are still queued or running)."""

        def run() -> m.IndexingStatus:
            _, _, ds = self.kb(knowledge_base_id)
            queued = self.core.jobs.running_count(ds)

            def status(state: str, error: str | None, attempts: int | None = None) -> m.IndexingStatus:
                return m.IndexingStatus(
                    knowledge_base_id=ds.sid,
                    job_id=job_id,
                    document_id=document_id,
                    state=state,
                    error=error,
                    attempts=attempts,
                    queued_jobs=queued,
                )

            if job_id is not None:
                job = self.core.reading.job(int(job_id)) if job_id.isdigit() else None
                if job is None or job.data_source_id != ds.id:
                    raise ToolError(
                        f"Unknown job `{job_id}` in knowledge base `{ds.sid}` (finished jobs are forgotten after "
                        f"{self.core.settings.job_retention_h:g} h; ask by document_id instead)."
                    )
                return status(job.state.value, job.error, job.attempts)
            if document_id is not None:
                doc = self.core.reading.document(ds, document_id)
                return status(doc_status(doc), doc.index_error)
            return status("queued" if queued else "idle", None)

        out = await off_loop(run)
        return render.result(out, render.status(out))
