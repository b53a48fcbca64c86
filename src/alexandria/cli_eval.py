"""``alexandria eval``: retrieval quality of keyword, vector and hybrid search (and any fusions, weights and embedders
side by side) on one or more BEIR-layout sets, with per-query diagnostics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import Progress, TaskID
from rich.table import Table

from alexandria.cli_common import err, fail, open_core, progress
from alexandria.config import Settings
from alexandria.errors import AlexandriaError
from alexandria.search import fusion
from alexandria.search.analyzer_variants import ANALYZERS


@click.command("eval")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--cache-dir",
    "--data-dir",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the embedded corpora are kept between runs, one per (set, embedder) "
    "(default: $XDG_CACHE_HOME/alexandria/eval or ~/.cache/alexandria/eval).",
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(["keyword", "vector", "hybrid"]),
    help="Modes to evaluate (repeatable; default all three).",
)
@click.option(
    "--fusion",
    "fusions",
    multiple=True,
    help="Hybrid fusion METHOD or METHOD:ALPHA, repeatable to compare side by side: "
    f"{', '.join(fusion.FUSION_METHODS)}; ALPHA is the vector weight (for `confidence`, fixed weights over the "
    "calibrated scores, as Dify's request weights). Default: the server's fusion setting.",
)
@click.option("--alpha", type=float, default=None, help="Default vector weight of `convex` (hybrid_alpha).")
@click.option("--embedder", "embedders", multiple=True, help="Embedder(s) to compare (default: the server's).")
@click.option(
    "--analyzer",
    "analyzers",
    multiple=True,
    type=click.Choice(list(ANALYZERS)),
    help="Also rank by keyword search under this analyzer (repeatable; rows `keyword [NAME]`, BM25 in memory, "
    "nothing embedded): `default` is the product's, `unigram` CJK without bigrams, `trigram` character trigrams "
    "(FTS5's trigram), `words` plain Unicode words, `porter` Porter-stemmed words (FTS5's porter unicode61).",
)
@click.option("--max-queries", type=click.IntRange(min=1), default=None, help="Evaluate a random sample of queries.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the query sample.")
@click.option(
    "--diagnostics",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write per-query nDCG@10, winners and losers per set to this JSON file.",
)
def eval_command(
    paths: tuple[Path, ...],
    cache_dir: Path | None,
    modes: tuple[str, ...],
    fusions: tuple[str, ...],
    alpha: float | None,
    embedders: tuple[str, ...],
    analyzers: tuple[str, ...],
    max_queries: int | None,
    seed: int,
    diagnostics: Path | None,
) -> None:
    """Evaluate BEIR-layout sets (each PATH a set folder, or a folder of sets): a table per set with nDCG@10,
    Recall@10, Recall@100 and MRR for every mode and variant, then one JSON line on stdout
    ``{set: {variant: metrics}}``. The corpus is embedded once per (set, embedder) and cached."""
    from alexandria import evaluation_runs as runs

    try:
        sets = runs.find_sets(paths)
        specs = [runs.parse_fusion(f) for f in fusions]
    except AlexandriaError as exc:
        fail(exc.message)
    cache = cache_dir or runs.default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {"data_dir": cache, "database_url": None}
    if alpha is not None:
        overrides["hybrid_alpha"] = alpha
    settings = Settings(**overrides)
    out: dict[str, Any] = {}
    diag: dict[str, Any] = {}
    with open_core(settings) as core:
        names = list(embedders) or [core.embedders.default_name()]
        chosen_specs = specs or [core.search.default_fusion()]
        for directory in sets:
            with progress() as bar:
                bars = _Bars(bar)
                try:
                    result = runs.evaluate_set(
                        core, directory, list(modes) or list(runs.MODES), chosen_specs, names, cache,
                        max_queries, seed, bars.documents, bars.query, analyzers,
                    )  # fmt: skip
                except AlexandriaError as exc:
                    fail(exc.message)
            diag[result.name] = runs.diagnostics(result)
            err.print(_table(result, diag[result.name]["summary"]))
            out[result.name] = result.table
    if diagnostics is not None:
        diagnostics.write_text(json.dumps(diag, ensure_ascii=False, indent=1))
        err.print(f"per-query diagnostics written to {diagnostics}")
    click.echo(json.dumps(out))


class _Bars:
    """One progress bar per (set, embedder) ingest and query pass."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.tasks: dict[str, TaskID] = {}

    def documents(self, label: str, done: int, total: int) -> None:
        if label not in self.tasks:
            self.tasks[label] = self.bar.add_task(f"embedding {escape(label)}", total=total)
        self.bar.update(self.tasks[label], completed=done)

    def query(self, label: str, total: int) -> None:
        key = "q " + label
        if key not in self.tasks:
            self.tasks[key] = self.bar.add_task(f"querying {escape(label)}", total=total)
        self.bar.advance(self.tasks[key])


def _table(result: Any, summary: dict[str, Any]) -> Table:
    table = Table(title=f"{result.name}: {result.documents} documents, {len(result.queries)} queries")
    # the labels in full (``keyword [trigram]``, ``hybrid:convex(alpha=0.3)``); the other columns wrap first
    table.add_column("variant", no_wrap=True, min_width=max(map(len, result.table), default=7))
    for col in ("ndcg@10", "recall@10", "recall@100", "mrr", "best / worst on queries"):
        table.add_column(col, justify="right")
    best = max((m["ndcg@10"] for m in result.table.values()), default=0.0)
    for label, m in result.table.items():
        ndcg = f"[bold]{m['ndcg@10']:.4f}[/bold]" if m["ndcg@10"] == best else f"{m['ndcg@10']:.4f}"
        table.add_row(
            escape(label), ndcg, f"{m['recall@10']:.4f}", f"{m['recall@100']:.4f}", f"{m['mrr']:.4f}",
            f"{summary[label]['best']} / {summary[label]['worst']}",
        )  # fmt: skip
    return table
