"""Helpers shared by the CLI modules: the data-dir option, settings, opening the core, errors, progress bars."""

from __future__ import annotations

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


def data_dir_option(fn: F) -> F:
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
