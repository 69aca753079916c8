"""The ferdata command line: one command per stage, plus sample, build, review and report.

Stage modules are imported inside commands so that ``ferdata --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ferdata.layout import Layout
from ferdata.params import load_params, section

app = typer.Typer(help="Build a clean, aligned, balanced facial-expression dataset.",
                  no_args_is_help=True, add_completion=False)
console = Console()

PARAMS = typer.Option(Path("params.yaml"), "--params", help="The pipeline's params.yaml.")
ROOT = typer.Option(Path("."), "--root", help="The pipeline folder (holding dvc.yaml).")


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@app.command()
def sample(
    out: Path = typer.Argument(..., help="Folder to write raw/<source>/ layouts into."),
    fer2013_rows: int = typer.Option(700, help="Rows of the generated fer2013.csv."),
    ckplus_subjects: int = typer.Option(12, help="CK+ subjects (several sequences each)."),
    jaffe_subjects: int = typer.Option(4, help="JAFFE subjects (up to 10)."),
    seed: int = typer.Option(0, help="Seed: the same seed writes identical files."),
    full_fer2013: bool = typer.Option(False, help="Write a full-size fer2013.csv (35,887 rows)."),
) -> None:
    """Write generated faces in the FER2013, CK+ and JAFFE raw layouts (tests, demo, benchmarks)."""
    from ferdata.sample import write_sample

    try:
        info = write_sample(out, fer2013_rows=fer2013_rows, ckplus_subjects=ckplus_subjects,
                            jaffe_subjects=jaffe_subjects, seed=seed, full_fer2013=full_fer2013)
    except (FileExistsError, ValueError) as exc:
        _fail(str(exc))
    console.print(info.summary())


def _ingest(params: dict, layout: Layout, sources: Optional[str], strict: bool) -> None:
    from ferdata.ingest import IngestParams, run_ingest
    from ferdata.sources.base import MissingSourceError
    from ferdata.summaries import class_table, ingest_table, reject_lines
    from ferdata.taxonomy import Taxonomy

    cfg = section(params, "ingest", IngestParams)
    if sources:
        cfg.sources = [s.strip() for s in sources.split(",") if s.strip()]
    try:
        result = run_ingest(cfg, layout.raw, layout.interim)
    except (MissingSourceError, ValueError) as exc:
        _fail(str(exc))
    console.print(ingest_table(result))
    console.print(class_table(result, Taxonomy.of_size(cfg.taxonomy).classes))
    for line in reject_lines(result.rejected, layout.raw):
        console.print(f"rejected {line}", markup=False, highlight=False, soft_wrap=True)
    if (strict or cfg.strict) and result.rejected:
        console.print(f"[red]strict mode: {len(result.rejected)} rejected input(s)[/red]")
        raise typer.Exit(1)


@app.command()
def ingest(
    params: Path = PARAMS, root: Path = ROOT,
    raw_dir: Optional[Path] = typer.Option(None, help="Raw data folder (default ROOT/raw)."),
    out: Optional[Path] = typer.Option(None, help="Processed folder (default ROOT/processed)."),
    sources: Optional[str] = typer.Option(None, help="Comma-separated sources (default: params)."),
    strict: bool = typer.Option(False, help="Exit non-zero if any input was rejected."),
) -> None:
    """Read raw/<source>/ into processed/interim/manifest.parquet, with rejects and an account."""
    _ingest(load_params(params), Layout(root, raw_dir, out), sources, strict)


def _taxonomy_classes(params: dict) -> tuple[str, ...]:
    from ferdata.ingest import IngestParams
    from ferdata.taxonomy import Taxonomy

    return Taxonomy.of_size(section(params, "ingest", IngestParams).taxonomy).classes


def _split(params: dict, layout: Layout) -> None:
    from ferdata.split import SplitParams, run_split

    try:
        result = run_split(section(params, "split", SplitParams), layout.aligned, layout.dataset,
                           _taxonomy_classes(params))
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    console.print(result.summary())


@app.command()
def split(
    params: Path = PARAMS, root: Path = ROOT,
    out: Optional[Path] = typer.Option(None, help="Processed folder (default ROOT/processed)."),
) -> None:
    """Final splits, dedup and leakage: processed/aligned -> processed/dataset (class folders)."""
    _split(load_params(params), Layout(root, None, out))
