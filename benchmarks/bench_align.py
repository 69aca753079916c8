"""Benchmark of the align stage: a full-size FER2013-like set and CK+-size frames.

Targets on 2 cores: 35,887 48x48 faces aligned, equalised and written in at most 60 s with
at most 2 GB peak memory (summed over the process tree); CK+-size frames (640x490, through
the detector) at 20 frames/s or more. Each pool run is set beside the single-process loop
(the same code with ``workers=1``), timed on a subset and extrapolated; the 48x48 faces
also beside the pool fitting them with dlib's own predictor, one face at a time
(``batched_fit: false``).

    .venv/bin/python benchmarks/bench_align.py [--rows 35887] [--frames 240] [--workers 2]
    .venv/bin/python benchmarks/bench_align.py --interim PIPELINE/processed/interim --raw PIPELINE/raw --frames 0

``--interim`` aligns an ingested manifest (your own FER2013, say: ``ferdata ingest`` first)
instead of the drawn faces; the figures then say how the stage does on real faces.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
from PIL import Image
from rich.console import Console
from rich.table import Table

from ferdata.align import AlignParams, run_align
from ferdata.executor import ExecutorParams, LocalExecutor
from ferdata.faces import PEAKS, Pose, Subject, render_faces
from ferdata.manifest import INGEST_SCHEMA, read_table, write_table

EXPRESSIONS = list(PEAKS.values())[:7]


class TreeMonitor:
    """Samples this process and its descendants in a background thread: peak summed RSS and CPU time.

    CPU time tells the work apart from the waiting when other jobs share the cores.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak_rss, self._stop = interval, 0, threading.Event()
        self._cpu: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                with proc.oneshot():
                    total += proc.memory_info().rss
                    times = proc.cpu_times()
                self._cpu[proc.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                pass
        self.peak_rss = max(self.peak_rss, total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu.values())

    def __enter__(self) -> "TreeMonitor":
        self._sample()
        self._start_cpu = dict(self._cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        for pid, seconds in self._start_cpu.items():
            self._cpu[pid] -= seconds


def faces(count: int, size: tuple[int, int], scale: tuple[float, float], rng: np.random.Generator,
          batch: int = 256) -> np.ndarray:
    """``count`` drawn faces, varied in person, expression, position, size, tilt and light."""
    width, height = size
    out = np.empty((count, height, width), np.uint8)
    for start in range(0, count, batch):
        n = min(batch, count - start)
        subjects = [Subject.random(rng) for _ in range(n)]
        expressions = [EXPRESSIONS[int(rng.integers(7))].scaled(rng.uniform(0.5, 1.1)) for _ in range(n)]
        poses = [Pose(center=(width / 2 + rng.normal(0, width / 40), height / 2 + rng.normal(0, height / 40)),
                      scale=rng.uniform(*scale), angle_deg=float(np.clip(rng.normal(0, 6), -15, 15)),
                      brightness=rng.uniform(-30, 30), contrast=rng.uniform(0.75, 1.2),
                      noise=rng.uniform(1, 4))
                 for _ in range(n)]
        out[start:start + n] = render_faces(subjects, expressions, poses, size, rng)[0]
    return out


def fer_like(root: Path, rows: int, rng: np.random.Generator, unique: int = 8192) -> Path:
    """interim/ with ``rows`` FER2013-like faces: ``unique`` drawn ones, repeated mirrored / shifted."""
    base = faces(min(unique, rows), (48, 48), (15.5, 19.5), rng)
    index = np.arange(rows) % len(base)
    images = base[index]
    variant = (np.arange(rows) // len(base)) % 4
    images[variant % 2 == 1] = images[variant % 2 == 1, :, ::-1]
    images[variant >= 2] = np.roll(images[variant >= 2], 1, axis=2)
    interim = root / "interim"
    (interim / "pixels").mkdir(parents=True)
    np.save(interim / "pixels" / "fer2013.npy", images)
    manifest = [dict(sample_id=f"fer2013-{i:06d}", source="fer2013", label="happy", label_index=3,
                     native_label="3", split="train", subject=None, sequence=None, frame=None,
                     source_file="fer2013.csv", source_line=i + 2, pixels_row=i, width=48, height=48,
                     content_hash=f"{i:040x}") for i in range(rows)]
    write_table(pa.Table.from_pylist(manifest, schema=INGEST_SCHEMA), interim / "manifest.parquet")
    return interim


def ckplus_like(root: Path, frames: int, rng: np.random.Generator) -> tuple[Path, Path]:
    """raw/ckplus/ PNG frames of 640x490 and an interim/ manifest pointing at them."""
    raw, interim = root / "raw", root / "interim"
    images = faces(frames, (640, 490), (80.0, 130.0), rng, batch=16)
    manifest = []
    for i, image in enumerate(images):
        subject, sequence, frame = f"S{100 + i // 10:03d}", "001", i % 10 + 1
        rel = f"cohn-kanade-images/{subject}/{sequence}/{subject}_{sequence}_{frame:08d}.png"
        (raw / "ckplus" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(raw / "ckplus" / rel)
        manifest.append(dict(sample_id=f"ckplus-{subject}_{sequence}_{frame:08d}", source="ckplus",
                             label="happy", label_index=3, native_label="5", split=None, subject=subject,
                             sequence=sequence, frame=frame, source_file=rel, source_line=None,
                             pixels_row=None, width=640, height=490, content_hash=f"{i:040x}"))
    interim.mkdir(parents=True)
    write_table(pa.Table.from_pylist(manifest, schema=INGEST_SCHEMA), interim / "manifest.parquet")
    return raw, interim


def subset(interim: Path, rows: int, root: Path) -> Path:
    """A copy of interim/ whose manifest keeps only its first ``rows`` rows."""
    out = root / "interim"
    out.mkdir(parents=True)
    if (interim / "pixels").exists():
        (out / "pixels").symlink_to((interim / "pixels").resolve())  # a relative target would resolve from out/
    write_table(read_table(interim / "manifest.parquet").slice(0, rows), out / "manifest.parquet")
    return out


@dataclass
class Run:
    """One run_align call: wall and CPU seconds, peak memory of the process tree, statuses."""

    wall: float
    cpu: float
    peak_rss: int
    statuses: dict[str, dict[str, int]]


def timed(params: AlignParams, interim: Path, raw: Path, out: Path, workers: int) -> Run:
    with TreeMonitor() as monitor, LocalExecutor(ExecutorParams(workers=workers)) as pool:
        start = time.perf_counter()
        result = run_align(params, interim, raw, out, pool)
        wall = time.perf_counter() - start
    return Run(wall, monitor.cpu_seconds, monitor.peak_rss, result.statuses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=35_887, help="FER2013-like faces")
    parser.add_argument("--single-rows", type=int, default=3_000, help="subset timed single-process")
    parser.add_argument("--frames", type=int, default=240, help="CK+-size frames")
    parser.add_argument("--single-frames", type=int, default=60, help="frames timed single-process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interim", type=Path, help="an ingested interim/ folder to align instead of drawn faces")
    parser.add_argument("--raw", type=Path, help="the raw/ folder that manifest points into")
    args = parser.parse_args()
    if (args.interim is None) != (args.raw is None):
        parser.error("--interim and --raw go together")
    console = Console(width=150)
    rng = np.random.default_rng(0)
    table = Table(title=f"align benchmark ({args.workers} workers, {psutil.cpu_count()} cores)")
    for col in ("set", "mode", "items", "wall s", "items/s", "CPU ms/item", "peak MB", "statuses"):
        table.add_column(col, justify="left" if col in ("set", "mode", "statuses") else "right")

    with tempfile.TemporaryDirectory(prefix="bench_align_") as tmp:
        root = Path(tmp)
        if args.interim:
            rows = read_table(args.interim / "manifest.parquet").num_rows
            console.print(f"aligning {rows} ingested faces of {args.interim} and drawing {args.frames} CK+-size frames ...")
            first = (f"ingested ({args.interim.resolve().parent.parent.name})", args.interim, args.raw, rows)
        else:
            console.print(f"drawing {args.rows} FER2013-like faces and {args.frames} CK+-size frames ...")
            first = ("FER2013-like 48x48", fer_like(root / "fer", args.rows, rng), root / "fer" / "raw", args.rows)
        runs = [(*first, args.single_rows, "60 s")]
        if args.frames:
            ck_raw, ck = ckplus_like(root / "ck", args.frames, rng)
            runs.append(("CK+-size 640x490", ck, ck_raw, args.frames, args.single_frames, "20/s"))
        for k, (name, interim, raw, items, single_items, target) in enumerate(runs):
            pool = timed(AlignParams(equalize=True), interim, raw, root / f"out-{k}", args.workers)
            table.add_row(name, f"pool x{args.workers} (target {target})", str(items), f"{pool.wall:.1f}",
                          f"{items / pool.wall:.1f}", f"{pool.cpu * 1e3 / items:.2f}",
                          f"{pool.peak_rss / 2**20:.0f}", _statuses(pool.statuses))
            if k == 0:
                per_face = timed(AlignParams(equalize=True, batched_fit=False), interim, raw, root / "out-dlib",
                                 args.workers)
                table.add_row(name, f"pool x{args.workers}, dlib's predictor per face", str(items),
                              f"{per_face.wall:.1f}", f"{items / per_face.wall:.1f}",
                              f"{per_face.cpu * 1e3 / items:.2f}", f"{per_face.peak_rss / 2**20:.0f}",
                              _statuses(per_face.statuses))
            one = min(single_items, items)
            small = subset(interim, one, root / f"subset-{k}")
            single = timed(AlignParams(equalize=True), small, raw, root / f"out1-{k}", 1)
            label = "single process" + (f" (first {one}, wall extrapolated)" if one < items else "")
            table.add_row(name, label, str(items), f"{single.wall * items / one:.1f}",
                          f"{one / single.wall:.1f}",
                          f"{single.cpu * 1e3 / one:.2f}", f"{single.peak_rss / 2**20:.0f}",
                          _statuses(single.statuses))
    console.print(table)
    console.print("Wall times include reading the manifest, loading dlib's models in every worker and "
                  "writing aligned.parquet; figures on a shared machine are noisy.")


def _statuses(statuses: dict[str, dict[str, int]]) -> str:
    totals: dict[str, int] = {}
    for counts in statuses.values():
        for status, n in counts.items():
            totals[status] = totals.get(status, 0) + n
    return ", ".join(f"{s} {n}" for s, n in sorted(totals.items()))


if __name__ == "__main__":
    main()
