"""Benchmark of the label-issues stage on real FER2013, measured against the FER+ majority.

Targets on 2 cores, with the default params (params.yaml's ``label_issues`` section): the
stage takes at most 15 minutes; FER+ disagrees with at least 65% of the top 5% of the
ranking and 55% of the top 10%; the flagged share is at most 10% of train.

REAL_DIR is a raw folder holding your own copies of ``fer2013/fer2013.csv`` and
``ferplus/fer2013new.csv`` (nothing is downloaded). The benchmark builds the dataset from
FER2013 alone with the main pipeline's ingest, align and split settings (in ``--work``, or a
temporary folder), then runs the stage in a fresh process per variant, one after the other:

* ``cnn``: the defaults (out-of-fold CNN);
* ``hog``: the same with ``features: hog`` (HOG + logistic regression), the baseline.

Each prints wall and CPU seconds, peak memory, out-of-fold accuracy, the flagged count and
the precision at the top 1%, 5%, 10% and at the budget beside the base rate. On a shared
host the wall time depends on other jobs; the load average is printed at the end.

    .venv/bin/python benchmarks/bench_label_issues.py REAL_DIR [--work DIR] [--variants cnn,hog]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("cnn", "hog")


def build(raw: Path, processed: Path) -> None:
    """ingest (FER2013 only, its own labels), align and split into ``processed``, unless done."""
    from ferdata.align import AlignParams, run_align
    from ferdata.ingest import IngestParams, run_ingest
    from ferdata.layout import Layout
    from ferdata.params import load_params, section
    from ferdata.split import SplitParams, run_split
    from ferdata.taxonomy import Taxonomy

    layout = Layout(processed.parent, raw, processed)
    if (layout.dataset / "manifest.parquet").exists():
        return
    params = load_params(ROOT / "params.yaml")
    ingest = replace(section(params, "ingest", IngestParams), sources=["fer2013"], labels="fer2013")
    run_ingest(ingest, layout.raw, layout.interim)
    run_align(section(params, "align", AlignParams), layout.interim, layout.raw, layout.aligned)
    run_split(section(params, "split", SplitParams), layout.aligned, layout.dataset,
              Taxonomy.of_size(ingest.taxonomy).classes)


def run_variant(variant: str, processed: Path, votes: Path) -> dict:
    """In this process: the stage with the default params (``features`` set by the variant)."""
    from ferdata.label_issues import LabelIssuesParams, run_label_issues
    from ferdata.params import load_params, section

    params = replace(section(load_params(ROOT / "params.yaml"), "label_issues", LabelIssuesParams), features=variant)
    start, cpu = time.perf_counter(), _cpu_seconds()
    result = run_label_issues(params, processed / "dataset", processed / f"label_issues-{variant}", votes)
    return {"wall": time.perf_counter() - start, "cpu": _cpu_seconds() - cpu,
            "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "samples": result.samples,
            "flagged": result.flagged, "budget": result.budget, "oof_accuracy": result.oof_accuracy,
            "ferplus": result.ferplus, "folds": params.folds, "epochs": params.epochs}


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: the work, apart from waiting on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real_dir", type=Path, help="raw folder with fer2013/fer2013.csv and ferplus/fer2013new.csv")
    parser.add_argument("--work", type=Path, help="folder for the built dataset (kept, reused); default: temporary")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {list(VARIANTS)}")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one variant in this process
    args = parser.parse_args()
    votes = args.real_dir / "ferplus" / "fer2013new.csv"
    if args.run:
        print(json.dumps(run_variant(args.run, args.work, votes)))
        return

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    missing = [p for p in (args.real_dir / "fer2013" / "fer2013.csv", votes) if not p.is_file()]
    if missing:
        parser.error(f"not found: {', '.join(map(str, missing))}")
    console = Console(width=160)
    with tempfile.TemporaryDirectory(prefix="bench-label-issues-") as tmp:
        processed = (args.work or Path(tmp)) / "processed"
        console.print(f"building the FER2013 dataset in {processed} (ingest, align, split) ...")
        build(args.real_dir, processed)
        rows = []
        for variant in variants:
            console.print(f"running label issues, features {variant} ...")
            done = subprocess.run([sys.executable, __file__, str(args.real_dir), "--work", str(processed),
                                   "--run", variant], capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{variant} failed:\n{done.stderr}")
            rows.append((variant, json.loads(done.stdout.strip().splitlines()[-1])))
    console.print(_table(rows))
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}; above 2 means other jobs shared the cores")


def _table(rows: list[tuple[str, dict]]) -> Table:
    """One row per variant: time, memory, accuracy, flags and precision at ranks."""
    first = rows[0][1]
    fp = first["ferplus"]
    table = Table(title=f"label issues on real FER2013: {first['samples']:,} train faces, "
                        f"{fp['faces']:,} with FER+ votes; FER+ majority disagrees with "
                        f"{fp['base_rate']:.1%} (base rate)")
    for col in ("features", "wall", "CPU s", "peak MB", "out-of-fold accuracy", "flagged",
                "top 1%", "top 5%", "top 10%", "at the budget"):
        table.add_column(col, justify="left" if col == "features" else "right")
    for variant, r in rows:
        at = r["ferplus"]["at_rank"]
        name = f"{variant} ({r['folds']} folds" + (f", {r['epochs']} epochs)" if variant == "cnn" else ")")
        flagged = f"{r['flagged']:,} ({r['flagged'] / r['samples']:.1%}, {r['budget']})"
        table.add_row(name, f"{r['wall'] / 60:.1f} min", f"{r['cpu']:,.0f}", f"{r['peak'] / 2**20:,.0f}",
                      f"{r['oof_accuracy']:.1%}", flagged,
                      *(f"{at[key]['precision']:.1%}" for key in ("top_1%", "top_5%", "top_10%", "budget")))
    table.caption = ("precision: share of the ranked faces whose FER+ majority differs from the label "
                     "(targets: top 5% >= 65%, top 10% >= 55%, stage <= 15 min, flagged <= 10%)")
    return table


if __name__ == "__main__":
    main()
