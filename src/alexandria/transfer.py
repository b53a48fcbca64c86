"""Moving a workspace between stores: ``alexandria export`` and ``alexandria import``.

A workspace leaves one store (SQLite or PostgreSQL) as one streamed file and enters another (of either kind) with
every id its clients know, and with its vectors (nothing is embedded again). This module holds the backend-neutral
the file format and the two CLI commands. The rows (what each table's rows carry, internal integer ids replaced by
natural keys) and their export are ``storage/common/transfer_rows.py``'s, the import ``storage/common/transfer.py``'s:
a store yields them (``Store.iter_workspace_rows``) and takes them (``Store.import_rows``).

The file, version 1: JSON Lines (UTF-8; gzip-compressed when its name ends with ``.gz``).

* line 1, the header: ``{"format": "alexandria-export", "version": 1, "workspace": <sid>, "source": <backend>,
  "exported_at": <epoch ms>, "vectors": "base64 float32 little-endian", "blobs": "base64", "counts": {table: n}}``;
* one line per row, ``{"t": <table>, "r": {...}}``, parents before children: the workspace, spaces, groups, space
  groups, data sources, views, API keys, group keys, dataset tags and their bindings, metadata fields, files,
  folders, tables, table rows, then each document followed by its segments, child chunks and chunks, and last the
  live jobs;
* the last line, ``{"end": {"counts": {table: n}}}``: an import without it, or whose counts differ, fails whole.

Rows name each other by natural keys (space/group/view/data source sIds, Dify UUIDs, API key hashes, table ids),
never by integer ids: the target assigns its own and rewrites every foreign key. Vectors travel as base64 float32
(the chunks' stored vectors, bit for bit), file contents as base64. Table rows keep their JSON text as written.

What moves: everything of the workspace, with its ids and timestamps (API key hashes too: keys keep working).
The queue's live jobs (queued or running) move as queued (a running job's lease belongs to a worker of the source
store; attempts are kept), and a document still in the pipeline without one gets an index job, so every document
not yet indexed is indexed by the target's workers. Not moved: finished jobs (history), the stores' internal ids and
caches (search statistics, ANN indexes: rebuilt by the target from the rows), and the installation's secrets (they
sign short-lived file download URLs of one installation).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from alexandria.domain.models import Workspace
from alexandria.errors import InvalidRequest, StorageError
from alexandria.storage.common.transfer_rows import BINARY, COUNTS, Row

if TYPE_CHECKING:
    import click

    from alexandria.storage.base import TransferStore

FORMAT = "alexandria-export"
VERSION = 1


# --- the file ---------------------------------------------------------------------------------------------------


def _encode(table: str, row: Row) -> Row:
    return {k: base64.b64encode(v).decode("ascii") if (table, k) in BINARY and v is not None else v
            for k, v in row.items()}  # fmt: skip


def _decode(table: str, row: Row) -> Row:
    for field in ("data", "vector"):
        value = row.get(field)
        if (table, field) in BINARY and isinstance(value, str):
            row[field] = base64.b64decode(value, validate=True)
    return row


def _line(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def write_export(
    rows: Iterator[tuple[str, Row]],
    out: IO[str],
    *,
    source: str,
    workspace_sid: str,
    now_ms: int,
    on_start: Callable[[int], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Write a store's export stream (``Store.iter_workspace_rows``) as the export file; returns the rows written by
    table. ``on_start(total)`` and ``on_rows(n)`` report progress."""
    first = next(rows, None)
    if first is None or first[0] != COUNTS:
        raise InvalidRequest("the store's export stream does not start with its counts")
    expected = {str(k): int(v) for k, v in first[1].items()}
    header = {"format": FORMAT, "version": VERSION, "workspace": workspace_sid, "source": source,
              "exported_at": now_ms, "vectors": "base64 float32 little-endian", "blobs": "base64",
              "counts": expected}  # fmt: skip
    out.write(_line(header))
    if on_start is not None:
        on_start(sum(expected.values()))
    counts: dict[str, int] = {}
    pending = 0
    for table, row in rows:
        out.write(_line({"t": table, "r": _encode(table, row)}))
        counts[table] = counts.get(table, 0) + 1
        pending += 1
        if on_rows is not None and pending >= 256:
            on_rows(pending)
            pending = 0
    if on_rows is not None and pending:
        on_rows(pending)
    if counts != {t: n for t, n in expected.items() if n}:  # one snapshot: what was counted is what was read
        raise StorageError(f"the export read {counts}, its snapshot counted {expected}")
    out.write(_line({"end": {"counts": counts}}))
    return counts


@dataclass(frozen=True)
class ExportHeader:
    workspace: str
    source: str
    exported_at: int
    counts: dict[str, int]


def read_export(inp: IO[str]) -> tuple[ExportHeader, Iterator[tuple[str, Row]]]:
    """The header of an export file and an iterator over its rows, which fails (InvalidRequest) on a malformed or
    truncated file (no end line, or counts that differ from the rows read)."""
    first = inp.readline()
    try:
        head = json.loads(first) if first.strip() else None
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise InvalidRequest("not an Alexandria export (no alexandria-export header line)")
    if head.get("version") != VERSION:
        raise InvalidRequest(f"unsupported export version {head.get('version')!r} (this version reads {VERSION})")
    try:
        counts = {str(k): int(v) for k, v in dict(head.get("counts") or {}).items()}
        header = ExportHeader(
            str(head["workspace"]), str(head.get("source")), int(head.get("exported_at") or 0), counts
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"malformed export header ({type(exc).__name__}: {exc})") from exc

    def rows() -> Iterator[tuple[str, Row]]:
        seen: dict[str, int] = {}
        ended: dict[str, int] | None = None
        for number, line in enumerate(inp, start=2):
            if not line.strip():
                continue
            if ended is not None:
                raise InvalidRequest(f"malformed export: line {number} after the end line")
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"malformed export: line {number} is not JSON ({exc.msg})") from exc
            if isinstance(obj, dict) and isinstance(obj.get("end"), dict):
                try:
                    ended = {str(k): int(v) for k, v in dict(obj["end"].get("counts") or {}).items()}
                except (TypeError, ValueError) as exc:
                    raise InvalidRequest(f"malformed export: bad end line ({exc})") from exc
                continue
            if not (isinstance(obj, dict) and isinstance(obj.get("t"), str) and isinstance(obj.get("r"), dict)):
                raise InvalidRequest(f"malformed export: line {number} is not a row")
            table = str(obj["t"])
            try:
                row = _decode(table, obj["r"])
            except ValueError as exc:
                raise InvalidRequest(f"malformed export: line {number} has bad base64 ({exc})") from exc
            seen[table] = seen.get(table, 0) + 1
            yield table, row
        if ended is None:
            raise InvalidRequest("truncated export: the end line is missing")
        if ended != seen:
            raise InvalidRequest(f"malformed export: the end line counts {ended}, the file holds {seen}")

    return header, rows()


def export_workspace(
    store: TransferStore,
    workspace_sid: str,
    out: IO[str],
    *,
    source: str,
    now_ms: int,
    on_start: Callable[[int], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Export a workspace of ``store`` to ``out`` (one consistent snapshot); returns the rows written by table."""
    rows = store.iter_workspace_rows(workspace_sid)
    try:
        return write_export(rows, out, source=source, workspace_sid=workspace_sid, now_ms=now_ms,
                            on_start=on_start, on_rows=on_rows)  # fmt: skip
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()  # ends the snapshot if writing failed


def import_workspace(
    store: TransferStore,
    inp: IO[str],
    *,
    on_start: Callable[[ExportHeader], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> Workspace:
    """Import an export file into ``store`` (one transaction: all or nothing); returns the new workspace."""
    header, rows = read_export(inp)
    if on_start is not None:
        on_start(header)

    def counted() -> Iterator[tuple[str, Row]]:
        pending = 0
        for item in rows:
            yield item
            pending += 1
            if on_rows is not None and pending >= 256:
                on_rows(pending)
                pending = 0
        if on_rows is not None and pending:
            on_rows(pending)

    return store.import_rows(counted())


# --- the CLI ----------------------------------------------------------------------------------------------------


def _open_text(path: str, write: bool, gz: bool) -> io.TextIOWrapper:
    """The export file as text: ``-`` is stdout or stdin; ``gz``: gzip-compressed."""
    if path == "-":
        return io.TextIOWrapper(sys.stdout.buffer if write else sys.stdin.buffer, encoding="utf-8")
    mode = "wb" if write else "rb"
    if gz:
        return io.TextIOWrapper(gzip.GzipFile(path, mode), encoding="utf-8")
    return io.TextIOWrapper(open(path, mode), encoding="utf-8")


def register(main: click.Group) -> None:
    """Add ``export`` and ``import`` to the ``alexandria`` command group."""
    import click

    from alexandria.cli_common import data_dir_option, err, fail, progress, settings_for
    from alexandria.errors import AlexandriaError
    from alexandria.storage import rows as rowutil
    from alexandria.storage.registry import open_store

    @main.command("export")
    @data_dir_option
    @click.option("--workspace", required=True, help="The workspace's sId.")
    @click.argument("output", type=click.Path(dir_okay=False, allow_dash=True))
    def export_command(data_dir: Path | None, workspace: str, output: str) -> None:
        """Export a workspace, vectors included, to one file (JSON Lines; gzip if it ends with .gz; - for stdout),
        read in one consistent snapshot. `alexandria import` loads it into any store."""
        settings = settings_for(data_dir)
        target = Path(output)
        partial = target.with_name(target.name + ".partial")
        try:
            store = open_store(settings)
        except AlexandriaError as exc:
            fail(exc.message)
        try:
            out = _open_text("-" if output == "-" else str(partial), write=True, gz=output.endswith(".gz"))
            try:
                with progress() as bar:
                    task = bar.add_task("exporting", total=None)
                    counts = export_workspace(
                        store,
                        workspace,
                        out,
                        source=settings.resolved_database_url().split(":", 1)[0],
                        now_ms=rowutil.now_ms(),
                        on_start=lambda total: bar.update(task, total=total),
                        on_rows=lambda n: bar.advance(task, n),
                    )
            finally:
                if output == "-":
                    out.flush()
                    out.detach()  # leave stdout open
                else:
                    out.close()
            if output != "-":
                partial.replace(target)
        except AlexandriaError as exc:
            partial.unlink(missing_ok=True)
            fail(exc.message)
        finally:
            store.close()
        err.print(f"exported workspace {workspace}: " + ", ".join(f"{n} {t}" for t, n in counts.items() if n))

    @main.command("import")
    @data_dir_option
    @click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, allow_dash=True))
    def import_command(data_dir: Path | None, input_path: str) -> None:
        """Import a workspace exported by `alexandria export` (same sIds, UUIDs, documents, vectors and key hashes:
        clients and keys keep working), in one transaction. Refused if its sId exists here. Prints its sId."""
        settings = settings_for(data_dir)
        if input_path != "-" and not Path(input_path).is_file():
            fail(f"no such file: {input_path}")
        try:
            store = open_store(settings)
        except AlexandriaError as exc:
            fail(exc.message)
        try:
            inp = _open_text(input_path, write=False, gz=input_path.endswith(".gz"))
            try:
                with progress() as bar:
                    task = bar.add_task("importing", total=None)
                    ws = import_workspace(
                        store,
                        inp,
                        on_start=lambda h: bar.update(task, total=sum(h.counts.values())),
                        on_rows=lambda n: bar.advance(task, n),
                    )
            finally:
                if input_path == "-":
                    inp.detach()
                else:
                    inp.close()
        except (AlexandriaError, OSError, EOFError, UnicodeDecodeError) as exc:
            fail(exc.message if isinstance(exc, AlexandriaError) else f"cannot read {input_path}: {exc}")
        finally:
            store.close()
        err.print(f"imported workspace {ws.sid}")
        click.echo(ws.sid)
