"""Benchmark of ingest + align on AffectNet's layout: full-size photos with given face boxes.

Generated AffectNet rows (``ferdata.sample_photos``: JPEG photos of 300-640 px a side,
AffectNet's code proportions, so about a third of the rows name no expression and are
dropped before their image is read) go through the ingest stage (CSV, decoding and hashing
every image) and the align stage (a process pool; the given box replaces the detector).
Baseline in the same run: the align stage on the same images without the boxes, finding
each face with dlib's HOG detector as CK+ and JAFFE frames are.

    .venv/bin/python benchmarks/bench_sources.py [--rows 3000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from bench_align import TreeMonitor
from rich.console import Console
from rich.table import Table

from ferdata.align import AlignParams, run_align
from ferdata.executor import ExecutorParams, LocalExecutor
from ferdata.given import GIVEN_FILE
from ferdata.ingest import IngestParams, run_ingest
from ferdata.manifest import read_table
from ferdata.sample_photos import write_affectnet


def stage(run, *args) -> tuple[float, float, int, object]:
    """Wall s, CPU s (process tree) and peak MB of one stage call, and its result."""
    with TreeMonitor() as monitor:
        start = time.perf_counter()
        result = run(*args)
        wall = time.perf_counter() - start
    return wall, monitor.cpu_seconds, monitor.peak_rss // 2**20, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000, help="AffectNet CSV rows")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    console = Console(width=150)
    with tempfile.TemporaryDirectory(prefix="bench_sources_") as tmp:
        raw = Path(tmp) / "raw"
        console.print(f"drawing {args.rows} AffectNet rows ...")
        write_affectnet(raw / "affectnet", np.random.default_rng(0), args.rows, {})
        interim = Path(tmp) / "interim"
        with LocalExecutor(ExecutorParams(workers=args.workers)) as pool:
            ingest = stage(run_ingest, IngestParams(sources=["affectnet"]), raw, interim, None, pool)
        images = ingest[3].manifest_rows
        sizes = read_table(interim / "manifest.parquet").select(["width", "height"]).to_pandas()
        megapixels = float((sizes.width * sizes.height).mean() / 1e6)
        align_params = AlignParams()
        with LocalExecutor(ExecutorParams(workers=args.workers)) as pool:  # a pool per run: both start cold
            given = stage(run_align, align_params, interim, raw, Path(tmp) / "aligned", pool)
        detector_interim = Path(tmp) / "interim-no-boxes"
        shutil.copytree(interim, detector_interim)
        shutil.rmtree(detector_interim / GIVEN_FILE)
        with LocalExecutor(ExecutorParams(workers=args.workers)) as pool:
            detected = stage(run_align, align_params, detector_interim, raw, Path(tmp) / "aligned-detector", pool)

    table = Table(title=f"AffectNet layout: {args.rows} rows, {images} images of {megapixels:.2f} MP on "
                        f"average ({args.workers} workers, {psutil.cpu_count()} cores)")
    for col in ("stage", "wall s", "images/s", "CPU ms/image", "peak MB", "outcome"):
        table.add_column(col, justify="left" if col in ("stage", "outcome") else "right")
    seen = ingest[3].accounts["affectnet"]
    rows = [("ingest (CSV, decode, hash)", ingest, f"{seen.accepted} accepted, dropped {seen.dropped}"),
            ("align, given boxes", given, _statuses(given[3])),
            ("align, HOG detector (baseline)", detected, _statuses(detected[3]))]
    for name, (wall, cpu, peak, _), outcome in rows:
        table.add_row(name, f"{wall:.1f}", f"{images / wall:.1f}", f"{cpu * 1e3 / images:.1f}", str(peak),
                      outcome)
    both = ingest[0] + given[0]
    table.add_row("ingest + align, given boxes", f"{both:.1f}", f"{images / both:.1f}",
                  f"{(ingest[1] + given[1]) * 1e3 / images:.1f}", "", "")
    console.print(table)
    console.print(f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}: the cores are shared, "
                  "so wall times are noisy; CPU ms per image is the steadier figure.")


def _statuses(result) -> str:
    return ", ".join(f"{status} {n}" for status, n in result.statuses.get("affectnet", {}).items())


if __name__ == "__main__":
    main()
