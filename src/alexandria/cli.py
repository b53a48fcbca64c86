"""The ``alexandria`` command."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import click

from alexandria import cli_eval, cli_spaces, transfer
from alexandria.cli_common import data_dir_option, err, fail, open_core, progress, settings_for
from alexandria.domain.filters import FilterSet
from alexandria.domain.models import Role, SearchMode
from alexandria.errors import AlexandriaError
from alexandria.ingest.chunkers import Section
from alexandria.services.core import Core
from alexandria.services.documents import UpsertRequest

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text", ".rst"}


@click.group()
@click.version_option("0.1.0", prog_name="alexandria")
def main() -> None:
    """Alexandria: a self-hosted knowledge-base server (Dust and Dify APIs over one core)."""


@main.command()
@data_dir_option
@click.option("--host", default=None, help="Listen address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Listen port (default 8000).")
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="In-process worker threads indexing async upserts (default: $ALEXANDRIA_WORKERS or 1; 0: none).",
)
def serve(data_dir: Path | None, host: str | None, port: int | None, log_level: str, workers: int | None) -> None:
    """Start the HTTP server on the embedded store (with its async-upsert workers)."""
    import uvicorn

    from alexandria.api.app import create_app
    from alexandria.api.http_protocol import DialectH11Protocol

    settings = settings_for(data_dir, host=host, port=port, workers=workers)
    # The app owns its core: its lifespan starts the workers and, at shutdown, stops them and closes the core (saving
    # the ANN cache). That must happen there: after a graceful stop on a signal, uvicorn re-raises the signal, so
    # code after uvicorn.run() does not run.
    app = create_app(settings)
    core: Core = app.state.core
    err.print(f"loading embedder [bold]{core.embedders.default_name()}[/bold] ...")
    core.embedders.get(core.embedders.default_name())
    load_indexes = getattr(core.store, "load_vector_indexes", None)  # the embedded store's index files
    if load_indexes is not None:
        err.print(f"loaded the vector indexes of {load_indexes()} data sources")
    err.print(
        f"serving {settings.resolved_database_url()} on http://{settings.host}:{settings.port} "
        f"({settings.workers} index workers)"
    )
    try:
        # requests h11 refuses are answered in the dialects' envelopes too (api/http_protocol.py)
        uvicorn.run(
            app.state.asgi, host=settings.host, port=settings.port, log_level=log_level, http=DialectH11Protocol
        )
    finally:
        core.close()  # if the server never started (closing twice is harmless)


def _redacted(url: str) -> str:
    """A database URL fit for logs: without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))


@main.command()
@data_dir_option
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="Worker threads indexing async upserts (default: $ALEXANDRIA_WORKERS, at least 1).",
)
@click.option("--log-level", default="info", show_default=True)
def worker(data_dir: Path | None, threads: int | None, log_level: str) -> None:
    """Index async upserts without serving HTTP, until SIGTERM or SIGINT; the batches in flight then finish
    (a second signal stops at once). Any number of worker processes can share one PostgreSQL database."""
    import logging
    import signal
    import threading
    from types import FrameType

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_for(data_dir)
    count = threads if threads is not None else max(settings.workers, 1)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        err.print(f"{signal.Signals(signum).name}: finishing the batches in flight (signal again to stop at once)")
        stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with open_core(settings) as core:
        err.print(f"loading embedder [bold]{core.embedders.default_name()}[/bold] ...")
        core.embedders.get(core.embedders.default_name())
        core.jobs.start_workers(count)
        try:
            err.print(f"worker ready: {count} threads on {_redacted(settings.resolved_database_url())}")
            while not stop.wait(1.0):
                pass
        finally:
            core.jobs.stop_workers()
    err.print("worker stopped")


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@data_dir_option
@click.option("--workspace", required=True, help="Workspace id (created with its global space if missing).")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.BUILDER.value, show_default=True)
@click.option("--name", default="", help="A label for the key.")
@click.option("--group", "groups", multiple=True, help="Add the key to this group (name or id; repeatable).")
@click.option(
    "--dataset",
    default=None,
    help="Bind the key to this data source (id, name or Dify dataset id): it can use no other (Dify's dataset keys).",
)
def keys_create(
    data_dir: Path | None, workspace: str, role: str, name: str, groups: tuple[str, ...], dataset: str | None
) -> None:
    """Create an API key and print it (last line of output; it is not shown again)."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws, _ = core.catalog.ensure_workspace(workspace)
            for group in groups:
                core.spaces.group(ws, group)  # every group must exist before the key is made
            bound = None
            if dataset is not None:
                found = core.catalog.find_dataset(ws, dataset) or core.catalog.data_source(ws, dataset)
                bound = found.id
            key, secret = core.keys.create(ws, Role(role), name, data_source_id=bound)
            for group in groups:
                core.spaces.add_key(ws, group, key)
        except AlexandriaError as exc:
            fail(exc.message)
        err.print(f"created {key.role.value} key #{key.id} {key.prefix}… for workspace {ws.sid}")
        click.echo(secret)


@main.group()
def datasources() -> None:
    """Manage data sources."""


@datasources.command("create")
@data_dir_option
@click.option("--workspace", required=True)
@click.option("--description", default=None)
@click.option(
    "--embedder",
    default=None,
    help="minilm (default, English), minilm-int8, multilingual-e5-small (any language; needs "
    "`pip install 'alexandria[multilingual]'`) or openai/<model>.",
)
@click.option("--chunk-size", type=int, default=None, help="Chunk size in model tokens (default: model limit).")
@click.option("--space", default=None, help="Space id or name (default: the global space).")
@click.option(
    "--connector",
    default=None,
    help="Make it a managed data source of this connector provider (it lives in the system space; only system "
    "keys write to it; share it with `views create`).",
)
@click.argument("name")
def datasources_create(
    data_dir: Path | None,
    workspace: str,
    description: str | None,
    embedder: str | None,
    chunk_size: int | None,
    space: str | None,
    connector: str | None,
    name: str,
) -> None:
    """Create a data source (with its default view); prints its id (last line)."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws, _ = core.catalog.ensure_workspace(workspace)
            target = core.catalog.space_by_name_or_id(ws, space) if space else None
            ds = core.catalog.create_data_source(
                ws,
                name,
                space=target,
                description=description,
                embedder=embedder,
                chunk_size=chunk_size,
                connector_provider=connector,
            )
        except AlexandriaError as exc:
            fail(exc.message)
        err.print(f"created data source {ds.name!r} ({ds.embedder}, {ds.dim}-d, chunks of {ds.chunk_size} tokens)")
        click.echo(ds.sid)


@datasources.command("list")
@data_dir_option
@click.option("--workspace", required=True)
def datasources_list(data_dir: Path | None, workspace: str) -> None:
    """List the workspace's data sources."""
    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
        except AlexandriaError as exc:
            fail(exc.message)
        for ds in core.catalog.data_sources(ws):
            click.echo(f"{ds.sid}\t{ds.name}\t{ds.embedder}\t{ds.chunk_size}")


def _files(paths: tuple[Path, ...]) -> list[tuple[Path, Path]]:
    """``(file, base)`` for every text file under the given paths."""
    found: list[tuple[Path, Path]] = []
    for p in paths:
        if p.is_dir():
            found += [(f, p) for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES]
        elif p.is_file():
            found.append((p, p.parent))
    return found


@main.command()
@data_dir_option
@click.option("--workspace", required=True)
@click.option("--data-source", "data_source", required=True, help="Data source id or name.")
@click.option("--tag", "tags", multiple=True, help="Tag added to every document (repeatable).")
@click.option("--batch", type=int, default=64, show_default=True, help="Documents embedded together.")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def ingest(
    data_dir: Path | None, workspace: str, data_source: str, tags: tuple[str, ...], batch: int, paths: tuple[Path, ...]
) -> None:
    """Ingest text files (txt, md, ...; directories recursively). The document id is the path relative to the
    argument it was found under."""
    files = _files(paths)
    if not files:
        fail("no text files found")
    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
            ds = core.catalog.data_source(ws, data_source)
        except AlexandriaError as exc:
            fail(exc.message)
        stored = unchanged = failed = 0
        with progress() as bar:
            task = bar.add_task("ingesting", total=len(files))
            for start in range(0, len(files), batch):
                part = files[start : start + batch]
                reqs = []
                for f, base in part:
                    text = f.read_text(encoding="utf-8", errors="replace")
                    doc_id = f.relative_to(base).as_posix()
                    reqs.append(
                        UpsertRequest(
                            document_id=doc_id,
                            section=Section(None, text, ()),
                            title=f.stem,
                            mime_type="text/markdown" if f.suffix.lower() in {".md", ".markdown"} else "text/plain",
                            tags=tags,
                            timestamp=f.stat().st_mtime * 1000,
                        )
                    )
                for (f, _), result in zip(
                    part, core.documents.upsert_many(ds, reqs, int(time.time() * 1000)), strict=True
                ):
                    if isinstance(result, AlexandriaError):
                        failed += 1
                        err.print(f"[yellow]skipped[/yellow] {f}: {result.message}")
                    elif result.changed:
                        stored += 1
                    else:
                        unchanged += 1
                bar.advance(task, len(part))
        err.print(f"{stored} stored, {unchanged} unchanged, {failed} failed")
        if failed:
            sys.exit(1)


@main.command()
@data_dir_option
@click.option("--workspace", required=True)
@click.option("--data-source", "data_source", required=True)
@click.option("--mode", type=click.Choice([m.value for m in SearchMode]), default="hybrid", show_default=True)
@click.option("--top-k", type=int, default=5, show_default=True)
@click.argument("query")
def search(data_dir: Path | None, workspace: str, data_source: str, mode: str, top_k: int, query: str) -> None:
    """Search a data source; prints one JSON line per document hit."""
    from alexandria.services.search import SearchRequest

    with open_core(settings_for(data_dir)) as core:
        try:
            ws = core.catalog.workspace(workspace)
            ds = core.catalog.data_source(ws, data_source)
            results = core.search.search(ds, SearchRequest(query, top_k, SearchMode(mode), FilterSet()))
        except AlexandriaError as exc:
            fail(exc.message)
        for r in results:
            best = r.chunks[0] if r.chunks else None
            click.echo(
                json.dumps(
                    {
                        "document_id": r.document.document_id,
                        "title": r.document.title,
                        "score": None if best is None or best.score is None else round(best.score, 4),
                        "text": best.text[:200] if best else "",
                    },
                    ensure_ascii=False,
                )
            )


@main.command()
@click.option(
    "--url",
    envvar="ALEXANDRIA_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The running `alexandria serve` to talk to ($ALEXANDRIA_URL).",
)
@click.option("--allow-writes", is_flag=True, help="List and allow the write tools (default: read-only).")
def mcp(url: str, allow_writes: bool) -> None:
    """MCP server over stdio for desktop agents: a thin client of a running `alexandria serve` (its `/mcp`), with
    the API key in $ALEXANDRIA_API_KEY. Read-only unless --allow-writes. Only MCP messages are written to stdout."""
    import os

    import anyio

    from alexandria.api.mcp.stdio import serve_stdio

    key = os.environ.get("ALEXANDRIA_API_KEY", "")
    if not key:
        fail("set ALEXANDRIA_API_KEY to an Alexandria API key (alexandria keys create ...)")
    try:
        anyio.run(functools.partial(serve_stdio, url, key, allow_writes=allow_writes))
    except KeyboardInterrupt:
        pass
    except Exception as exc:
        cause: BaseException = exc
        while isinstance(cause, BaseExceptionGroup) and len(cause.exceptions) == 1:
            cause = cause.exceptions[0]  # anyio's task groups wrap the one error that stopped them
        fail(f"alexandria mcp ({url}): {type(cause).__name__}: {cause}")


cli_spaces.register(main, keys)  # the spaces, groups, views and key management commands
main.add_command(cli_eval.eval_command)
transfer.register(main)  # export and import (moving a workspace between stores)

if __name__ == "__main__":
    main()


@main.command()
@data_dir_option
def migrate(data_dir: Path | None) -> None:
    """Bring the store's schema up to date (both backends; `serve` and `worker` do it too when they start)."""
    from alexandria.storage.registry import open_store

    settings = settings_for(data_dir)
    try:
        store = open_store(settings)
    except AlexandriaError as exc:
        fail(exc.message)
    version = getattr(getattr(store, "db", None), "schema_version", None)
    store.close()
    err.print(f"{_redacted(settings.resolved_database_url())} is at schema version {version}")
    click.echo(str(version))
