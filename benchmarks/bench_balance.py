"""Benchmark of the balance stage on a FER2013-size train split (28,709 faces, real class counts).

Targets on 2 cores: SMOTE at most 20 s and ADASYN at most 90 s to resample, peak memory at
most 2.5 GB for the whole stage. Each method runs the stage function (:func:`run_balance`)
in its own subprocess, which reports its peak RSS (``getrusage``); the same subprocess then
times imbalanced-learn's RandomOverSampler on the same float32 pixel array, a baseline that
only copies rows, so that methods timed under different load can be compared.

    .venv/bin/python benchmarks/bench_balance.py [--unique 8192] [--methods smote,adasyn,...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from ferdata.balance import BalanceParams, run_balance
from ferdata.faces import PEAKS, Pose, Subject, render_faces
from ferdata.manifest import DATASET_SCHEMA, array_to_pixels, pixels_to_array, read_table, write_table
from ferdata.taxonomy import CLASSES_7

#: FER2013 Training class counts (FORMATS.md), in class index order.
FER2013_TRAIN = (3995, 436, 4097, 7215, 4830, 3171, 4965)
#: name -> params; ``:pca`` searches neighbours among 100 PCA components.
RUNS = {
    "random_over": dict(method="random_over"),
    "smote": dict(method="smote"),
    "borderline_smote": dict(method="borderline_smote"),
    "adasyn": dict(method="adasyn"),
    "smote:pca": dict(method="smote", feature_space="pca"),
    "adasyn:pca": dict(method="adasyn", feature_space="pca"),
    "augment": dict(method="augment"),
}
TARGETS = {"smote": "20 s, 2.5 GB", "adasyn": "90 s, 2.5 GB"}


def draw_faces(label: int, count: int, rng: np.random.Generator, batch: int = 256) -> np.ndarray:
    """``count`` 48x48 faces showing class ``label``, varied in person, intensity, pose and light."""
    out = np.empty((count, 48, 48), np.uint8)
    for start in range(0, count, batch):
        n = min(batch, count - start)
        subjects = [Subject.random(rng) for _ in range(n)]
        expressions = [PEAKS[CLASSES_7[label]].scaled(rng.uniform(0.4, 1.1)) for _ in range(n)]
        poses = [Pose(center=(24 + rng.normal(0, 1.2), 23.5 + rng.normal(0, 1.2)), scale=rng.uniform(15.5, 19.5),
                      angle_deg=float(np.clip(rng.normal(0, 5), -12, 12)), brightness=rng.uniform(-30, 30),
                      contrast=rng.uniform(0.75, 1.2), noise=rng.uniform(1, 4))
                 for _ in range(n)]
        out[start:start + n] = render_faces(subjects, expressions, poses, (48, 48), rng)[0]
    return out


def fer_train(root: Path, unique: int, rng: np.random.Generator) -> Path:
    """dataset/manifest.parquet with FER2013's train counts: ``unique`` drawn faces in all,
    repeated within each class as mirrored / shifted variants."""
    total = sum(FER2013_TRAIN)
    images, labels = [], []
    for k, count in enumerate(FER2013_TRAIN):
        base = draw_faces(k, max(1, min(count, round(unique * count / total))), rng)
        index = np.arange(count) % len(base)
        variant = (np.arange(count) // len(base)) % 4
        faces = base[index]
        faces[variant % 2 == 1] = faces[variant % 2 == 1, :, ::-1]
        faces[variant >= 2] = np.roll(faces[variant >= 2], 1, axis=2)
        images.append(faces)
        labels += [k] * count
    rows = []
    for i, k in enumerate(labels):
        sid, label = f"fer2013-{i:06d}", CLASSES_7[k]
        rows.append(dict(sample_id=sid, source="fer2013", label=label, label_index=k, native_label=str(k),
                         split="train", subject=None, sequence=None, frame=None, source_file="fer2013.csv",
                         source_line=i + 2, pixels_row=i, width=48, height=48, content_hash=f"{i:040x}",
                         align_status="aligned", faces_detected=1, eye_angle=0.0, interocular=17.0,
                         fit_residual=0.01, fit_disagreement=0.02, fold=None, dup_group=None, phash=f"{i:016x}",
                         path=f"train/{label}/{sid}.png", origin="real"))
    at = DATASET_SCHEMA.get_field_index("pixels")
    table = pa.Table.from_pylist(rows, schema=DATASET_SCHEMA.remove(at))
    table = table.add_column(at, DATASET_SCHEMA.field("pixels"), array_to_pixels(np.concatenate(images)))
    write_table(table, root / "dataset" / "manifest.parquet")
    return root / "dataset"


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads: the work, apart from waiting on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(name: str, dataset: Path, out: Path) -> dict:
    """In a fresh process: the stage, its peak RSS, then the RandomOverSampler baseline."""
    from imblearn.over_sampling import RandomOverSampler

    start, cpu = time.perf_counter(), _cpu_seconds()
    result = run_balance(BalanceParams(seed=42, **RUNS[name]), dataset, out)
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    table = read_table(dataset / "manifest.parquet")
    pixels = pixels_to_array(table["pixels"]).reshape(table.num_rows, -1).astype(np.float32)
    y = table["label_index"].to_numpy()
    start = time.perf_counter()
    RandomOverSampler(random_state=0).fit_resample(pixels, y)
    baseline = time.perf_counter() - start
    return {"wall": wall, "cpu": cpu, "seconds": result.seconds, "peak": peak, "baseline": baseline,
            "made": sum(result.made.values()), "after": result.after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unique", type=int, default=8192, help="distinct drawn faces (the rest are variants)")
    parser.add_argument("--methods", default=",".join(RUNS), help=f"comma-separated, from {list(RUNS)}")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # internal: one method in this process
    parser.add_argument("--dataset", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(args.run, args.dataset, args.out)))
        return
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {list(RUNS)}")
    console = Console(width=160)
    table = Table(title=f"balance benchmark: {sum(FER2013_TRAIN)} train faces, FER2013 class counts")
    for col in ("method", "target", "resample s", "read s", "write s", "stage wall s", "stage CPU s", "peak MB",
                "new rows", "min / max class after", "RandomOverSampler s (same process)"):
        table.add_column(col, justify="left" if col in ("method", "target") else "right")
    with tempfile.TemporaryDirectory(prefix="bench_balance_") as tmp:
        root = Path(tmp)
        console.print(f"drawing {args.unique} faces for {sum(FER2013_TRAIN)} train rows ...")
        dataset = fer_train(root, args.unique, np.random.default_rng(0))
        for name in names:
            console.print(f"running {name} ...")
            done = subprocess.run([sys.executable, __file__, "--run", name, "--dataset", str(dataset),
                                   "--out", str(root / f"out-{name.replace(':', '-')}")],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                table.add_row(name, TARGETS.get(name, ""), *["-"] * 8, done.stderr.strip().splitlines()[-1])
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            s = r["seconds"]
            table.add_row(name, TARGETS.get(name, ""), f"{s['resample']:.1f}", f"{s['read']:.1f}",
                          f"{s['write']:.1f}", f"{r['wall']:.1f}", f"{r['cpu']:.1f}", f"{r['peak'] / 2**20:.0f}", str(r["made"]),
                          f"{min(r['after'].values())} / {max(r['after'].values())}", f"{r['baseline']:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
