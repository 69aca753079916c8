"""Benchmark of the per-face stages at scale: ingest + align + split of generated AffectNet-layout
faces on a Dask LocalCluster, at several sizes in one run.

The faces (96x96 JPEG photos, one face each, with its box and 68 landmarks in
``training.csv``; ``ferdata.sample_photos.affectnet_faces``) are drawn once into shards of
5,000 under ``--cache`` and reused by later runs; a size N reads the first N rows. Each size
runs on a fresh cluster of ``--workers`` worker processes (started before the clock), with
``executor.partition_size`` 4096. Printed per size: wall time per stage, faces per second,
CPU time per face (client and workers: steadier than wall time on shared cores), peak
resident memory of each worker and of the client (which also hosts the scheduler), and the
cost per face against the smallest size. Baseline in the same run: the local process pool
(``executor.kind: local``) on the smallest size. Last, a projection of wall time at 1M faces
against worker count from the measured costs per face.

    .venv/bin/python benchmarks/bench_scale.py [--cache DIR] [--sizes 100000,1000000] [--workers 2] [--part-rows N]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from ferdata.align import AlignParams, run_align
from ferdata.executor import DaskExecutor, Executor, ExecutorParams, open_executor
from ferdata.ingest import IngestParams, run_ingest
from ferdata.sample_photos import affectnet_faces
from ferdata.sources.affectnet import AffectNet
from ferdata.split import SplitParams, run_split

SHARD = 5000
HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
          "valence,arousal\n")
MB = 2 ** 20


def draw_shard(cache: str, k: int) -> None:
    """Faces ``k * SHARD`` .. of the cache: images and ``rows-<k>.csv``, then a ``.done`` mark."""
    folder = Path(cache) / "affectnet"
    lines = affectnet_faces(folder, np.random.default_rng([7, k]), SHARD, f"{k:05d}")
    (folder / f"rows-{k:05d}.csv").write_text("".join(lines))
    (folder / f"rows-{k:05d}.done").touch()


def ensure_cache(cache: Path, faces: int, workers: int, console: Console) -> None:
    """Draw the shards the largest size needs that the cache lacks, on ``workers`` processes."""
    missing = [k for k in range(math.ceil(faces / SHARD))
               if not (cache / "affectnet" / f"rows-{k:05d}.done").exists()]
    if not missing:
        return
    console.print(f"drawing {len(missing) * SHARD:,} faces into {cache} ({len(missing)} shards) ...")
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(draw_shard, [str(cache)] * len(missing), missing))
    console.print(f"  drawn in {time.perf_counter() - start:.0f} s")


def raw_view(cache: Path, size: int, root: Path) -> Path:
    """``root/raw/affectnet/`` holding the first ``size`` rows (their images linked, not copied)."""
    folder = root / "raw" / "affectnet"
    folder.mkdir(parents=True)
    (folder / "Manually_Annotated_Images").symlink_to(cache / "affectnet" / "Manually_Annotated_Images")
    with (folder / "training.csv").open("w") as out:
        out.write(HEADER)
        left = size
        for k in range(math.ceil(size / SHARD)):
            lines = (cache / "affectnet" / f"rows-{k:05d}.csv").read_text().splitlines(keepends=True)
            out.writelines(lines[:left])
            left -= len(lines[:left])
    (folder / "validation.csv").write_text(HEADER)
    return root / "raw"


class Monitor:
    """Samples this process and its descendants in a thread: peak RSS and CPU time per process."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.peak, self.cpu = interval, {}, {}
        self.window = 0  # this process's peak RSS since the last window_peak()
        self.start_cpu: dict[int, float] = {}  # processes that existed before: their CPU time then
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, first: bool = False) -> None:
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    rss, times = proc.memory_info().rss, proc.cpu_times()
            except psutil.Error:
                continue
            self.peak[proc.pid] = max(self.peak.get(proc.pid, 0), rss)
            if proc.pid == me.pid:
                self.window = max(self.window, rss)
            self.cpu[proc.pid] = times.user + times.system
            if first:
                self.start_cpu[proc.pid] = self.cpu[proc.pid]

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "Monitor":
        self._sample(first=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()

    def window_peak(self) -> int:
        """This process's peak RSS since the previous call (or the start), and a new window."""
        self._sample()
        peak, self.window = self.window, 0
        return peak

    def cpu_seconds(self, pids: set[int]) -> float:
        return sum(self.cpu[p] - self.start_cpu.get(p, 0.0) for p in pids if p in self.cpu)


@dataclass
class Run:
    """One build: faces, stage wall times, CPU seconds and peak RSS of client and workers."""

    kind: str
    size: int
    faces: int = 0
    stages: dict[str, float] = field(default_factory=dict)
    client_cpu: float = 0.0
    worker_cpu: float = 0.0
    client_peak: int = 0
    worker_peaks: list[int] = field(default_factory=list)
    startup: float = 0.0
    client_stage_cpu: dict[str, float] = field(default_factory=dict)
    client_stage_peak: dict[str, int] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return sum(self.stages.values())

    def per_face(self, seconds: float) -> float:
        return seconds / self.faces * 1e3


def worker_pids(pool: Executor) -> set[int]:
    """The processes that run tasks: Dask's worker processes, or the local pool's."""
    if isinstance(pool, DaskExecutor):
        return set(pool.client.run(os.getpid).values())
    return {p.pid for p in psutil.Process().children(recursive=True)}


def build(raw: Path, out: Path, kind: str, workers: int) -> Run:
    run = Run(kind, 0)
    with Monitor() as monitor:
        clock = time.perf_counter()
        with open_executor(ExecutorParams(kind=kind, workers=workers)) as pool:
            run.startup = time.perf_counter() - clock
            start_pids = worker_pids(pool)
            stages = {"ingest": lambda: run_ingest(IngestParams(sources=["affectnet"]), raw, out / "interim", None,
                                                   pool),
                      "align": lambda: run_align(AlignParams(), out / "interim", raw, out / "aligned", pool),
                      "split": lambda: run_split(SplitParams(), out / "aligned", out / "dataset", executor=pool)}
            for name, stage in stages.items():
                clock, cpu = time.perf_counter(), psutil.Process().cpu_times()
                monitor.window_peak()
                outcome = stage()
                run.client_stage_peak[name] = monitor.window_peak()
                run.stages[name] = time.perf_counter() - clock
                after = psutil.Process().cpu_times()
                run.client_stage_cpu[name] = after.user + after.system - cpu.user - cpu.system
                if name == "ingest":
                    result = outcome
            pids = start_pids | worker_pids(pool)
    run.faces = result.manifest_rows
    me = os.getpid()
    run.client_cpu = monitor.cpu_seconds({me})
    run.worker_cpu = monitor.cpu_seconds(pids)
    run.client_peak = monitor.peak[me]
    run.worker_peaks = sorted((monitor.peak[p] for p in pids if p in monitor.peak), reverse=True)[:workers]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ferdata-bench-scale",
                        help="folder for the drawn faces, reused by later runs (default: %(default)s)")
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated face counts")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--keep", action="store_true", help="keep each size's processed/ folder")
    parser.add_argument("--part-rows", type=int, default=AffectNet.part_rows,
                        help="AffectNet rows ingest reads at a time (default: %(default)s); smaller shows "
                             "the client's memory of a many-part read at small sizes")
    args = parser.parse_args()
    AffectNet.part_rows = args.part_rows
    sizes = sorted(int(s) for s in args.sizes.split(","))
    console = Console(width=160)
    cache = args.cache.expanduser().resolve()
    ensure_cache(cache, max(sizes), args.workers, console)

    runs: list[Run] = []
    plan = [("local", sizes[0])] + [("dask", n) for n in sizes]
    for kind, size in plan:
        root = cache / "runs" / f"{kind}-{size}"
        shutil.rmtree(root, ignore_errors=True)
        raw = raw_view(cache, size, root)
        console.print(f"{kind}: {size:,} faces ...")
        run = build(raw, root / "processed", kind, args.workers)
        run.size = size
        runs.append(run)
        console.print(f"  {run.wall:.0f} s ({', '.join(f'{s} {t:.0f} s' for s, t in run.stages.items())}), "
                      f"load average {os.getloadavg()[0]:.1f}")
        if not args.keep:
            shutil.rmtree(root)
    report(runs, args.workers, console)


def report(runs: list[Run], workers: int, console: Console) -> None:
    first = next(r for r in runs if r.kind == "dask")
    table = Table(title=f"ingest + align + split of AffectNet-layout faces (96x96 JPEG, given boxes), "
                        f"{workers} workers on {psutil.cpu_count()} cores")
    for col in ("executor", "faces", "wall s", "ingest s", "align s", "split s", "faces/s", "wall ms/face",
                "CPU ms/face (client + workers)", "peak MB per worker", "peak MB client", "cost/face vs first"):
        table.add_column(col, justify="left" if col == "executor" else "right")
    for r in runs:
        cpu = r.per_face(r.client_cpu + r.worker_cpu)
        ratio = (f"wall {r.per_face(r.wall) / first.per_face(first.wall):.2f}x, CPU "
                 f"{cpu / first.per_face(first.client_cpu + first.worker_cpu):.2f}x") if r.kind == "dask" else ""
        table.add_row(f"{r.kind}{' (baseline)' if r.kind == 'local' else ''}", f"{r.faces:,}", f"{r.wall:.0f}",
                      *(f"{r.stages[s]:.0f}" for s in ("ingest", "align", "split")), f"{r.faces / r.wall:.0f}",
                      f"{r.per_face(r.wall):.2f}", f"{cpu:.2f} ({r.per_face(r.client_cpu):.2f} + "
                      f"{r.per_face(r.worker_cpu):.2f})",
                      ", ".join(f"{p / MB:.0f}" for p in r.worker_peaks), f"{r.client_peak / MB:.0f}", ratio)
    console.print(table)
    console.print("client peak MB per stage: " + "; ".join(
        f"{r.kind} {r.faces:,}: " + ", ".join(f"{s} {p / MB:.0f}" for s, p in r.client_stage_peak.items())
        for r in runs))
    console.print("cluster start-up (not in the wall times): "
                  + ", ".join(f"{r.kind} {r.size:,}: {r.startup:.1f} s" for r in runs)
                  + f"; load average now {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
                  "(the cores are shared: wall times are inflated when others run, CPU times less so)")
    last = runs[-1]
    client, work = last.client_cpu / last.faces, last.worker_cpu / last.faces
    console.print(f"projected wall time for 1,000,000 faces = client {client * 1e3:.2f} ms/face (serial) + "
                  f"workers {work * 1e3:.2f} CPU ms/face / worker count (CPU times measured at {last.faces:,}; "
                  "client stage CPU ms/face: " + ", ".join(f"{s} {c * 1e3 / last.faces:.2f}"
                                                           for s, c in last.client_stage_cpu.items()) + ")")
    projection = Table()
    projection.add_column("workers", justify="right")
    projection.add_column("hours", justify="right")
    for w in (2, 4, 8, 16, 32, 64, 128):
        projection.add_row(str(w), f"{1e6 * (client + work / w) / 3600:.2f}")
    console.print(projection)


if __name__ == "__main__":
    main()
