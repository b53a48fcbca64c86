"""Helpers shared by the CLI modules: the data-dir option, settings, opening the core, errors, progress bars."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from alexandria.config import Settings
from alexandria.services.core import Core

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True)


def _set_database_url(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:  # read by Settings like any ALEXANDRIA_* variable
        os.environ["ALEXANDRIA_DATABASE_URL"] = value


def data_dir_option(fn: F) -> F:
    """``--data-dir`` and ``--database-url`` (the store: the embedded SQLite one in the data directory by default,
    or ``postgresql://user:password@host:port/db``)."""
    fn = click.option(
        "--database-url",
        default=None,
        expose_value=False,
        callback=_set_database_url,
        help="Store URL (default: $ALEXANDRIA_DATABASE_URL, or the embedded SQLite store in the data directory).",
    )(fn)
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        help="Data directory (default: $ALEXANDRIA_DATA_DIR or ./data).",
    )(fn)


def settings_for(data_dir: Path | None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


@contextmanager
def open_core(settings: Settings) -> Iterator[Core]:
    core = Core(settings)
    try:
        yield core
    finally:
        core.close()


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    sys.exit(1)


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
