"""Compact text renderings of the tools' results, for clients that read ``content`` rather than
``structuredContent``: one line per item, the ids a follow-up call needs, nothing decorative."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, ContentBlock, ResourceLink, TextContent

from alexandria.api.mcp import models as m


def result(structured: Any, text: str, links: list[ResourceLink] | None = None) -> CallToolResult:
    """A tool result: the typed structure plus its text rendering (and resource links to documents)."""
    blocks: list[ContentBlock] = [TextContent(type="text", text=text)]
    blocks.extend(links or [])
    return CallToolResult(content=blocks, structured_content=structured.model_dump(mode="json"))


def document_uri(kb_id: str, document_id: str) -> str:
    return f"alexandria://kb/{kb_id}/documents/{document_id}"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def knowledge_bases(out: m.KnowledgeBaseList) -> str:
    if not out.knowledge_bases:
        return "No knowledge base is readable with this key."
    lines = [f"{len(out.knowledge_bases)} knowledge bases:"]
    for kb in out.knowledge_bases:
        access = "read-write" if kb.can_write else "read-only"
        desc = f" — {kb.description}" if kb.description else ""
        lines.append(f"- {kb.id} {kb.name!r} (space {kb.space}, {access}){desc}")
    return "\n".join(lines)


def search(out: m.SearchResult) -> str:
    if not out.hits:
        return f"No hits for {out.query!r} ({out.mode}) in {', '.join(out.knowledge_base_ids) or 'no knowledge base'}."
    lines = [f"{len(out.hits)} hits for {out.query!r} ({out.mode}):"]
    for i, h in enumerate(out.hits, start=1):
        url = f" <{h.source_url}>" if h.source_url else ""
        lines.append(
            f"{i}. [{_score(h.score)}] {h.title} — kb {h.knowledge_base_id}, doc {h.document_id}, "
            f"chunk {h.position.chunk_index}/{h.position.chunk_count} "
            f"(keyword {_score(h.scores.keyword)}, semantic {_score(h.scores.semantic)}){url}"
        )
        lines.append("   " + " ".join(h.text.split()))
    return "\n".join(lines)


def grep(out: m.GrepResult) -> str:
    more = " (truncated: raise max_matches or narrow to a document)" if out.truncated else ""
    lines = [f"{len(out.matches)} lines match {out.pattern!r} in {out.scanned_documents} documents{more}:"]
    lines += [f"{g.document_id}:{g.line}: {g.text}" for g in out.matches]
    return "\n".join(lines)


def documents(out: m.DocumentList) -> str:
    lines = [f"{len(out.documents)} of {out.total} documents in {out.knowledge_base_id}:"]
    for d in out.documents:
        err = f" error: {d.error}" if d.error else ""
        lines.append(f"- {d.document_id} {d.title!r} [{d.status}, {d.chunks} chunks, {d.chars} chars]{err}")
    if out.next_offset is not None:
        lines.append(f"(more: offset={out.next_offset})")
    return "\n".join(lines)


def document_text(out: m.DocumentText) -> str:
    end = out.offset + len(out.text)
    more = (
        f"\n[chars {out.offset}-{end} of {out.total_chars}; next offset={out.next_offset}]" if out.next_offset else ""
    )
    return f"# {out.title} ({out.document_id})\n{out.text}{more}"


def chunk_context(out: m.ChunkContext) -> str:
    lines = [f"{out.title} ({out.document_id}), chunks of {out.chunk_count}:"]
    lines += [f"[{c.chunk_index}] {c.text}" for c in out.chunks]
    return "\n".join(lines)


def tables(out: m.TableList) -> str:
    if not out.tables:
        return f"No tables in {out.knowledge_base_id}."
    lines = [f"{len(out.tables)} tables in {out.knowledge_base_id}:"]
    for t in out.tables:
        cols = ", ".join(f"{c.name} {c.type}" for c in t.columns)
        lines.append(f"- {t.name} ({t.table_id}): {cols}")
    return "\n".join(lines)


def query(out: m.QueryResult) -> str:
    names = [c.name for c in out.columns]
    lines = [" | ".join(names)]
    lines += [" | ".join(str(r.get(n, "")) for n in names) for r in out.rows]
    more = " (truncated)" if out.truncated else ""
    lines.append(f"({len(out.rows)} rows{more}, {out.elapsed_ms:.0f} ms)")
    return "\n".join(lines)


def status(out: m.IndexingStatus) -> str:
    what = f"job {out.job_id}" if out.job_id else f"document {out.document_id}" if out.document_id else "knowledge base"
    err = f", error: {out.error}" if out.error else ""
    return f"{what} in {out.knowledge_base_id}: {out.state}{err} ({out.queued_jobs} index jobs queued or running)"


def write(out: m.WriteResult) -> str:
    job = f", job {out.job_id} (poll get_indexing_status)" if out.job_id else ""
    return f"document {out.document_id} in {out.knowledge_base_id}: {out.status}{job}"
