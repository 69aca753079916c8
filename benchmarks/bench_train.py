"""Benchmark of the train stage: the five-layer CNN on a FER2013-size training set.

Target on 2 cores: at least 500 training images/s (an epoch of 28,709 faces in at most
60 s). Each variant runs in its own fresh Python process, one after the other:

* ``stage``: ``run_train`` as the pipeline calls it (tf.data from the Parquet pixels, op
  determinism on), validating on 3,589 images each epoch;
* ``stage-nondeterministic``: the same without ``enable_op_determinism``, to price it;
* ``stage-no-onednn``: the same with TensorFlow's oneDNN kernels off
  (``TF_ENABLE_ONEDNN_OPTS=0``), as TensorFlow leaves them on a CPU without AVX-512 VNNI
  unless ferdata turns them on;
* ``stage-keras-bn``: the same with Keras's own ``BatchNormalization`` layer (separate ops)
  in place of ferdata's fused one, as ferdata trained before it had that layer;
* ``stage-augment``: the same with online augmentation (flip, rotation, zoom, shift), one
  resampling per face (ferdata's ``FaceAugmentation``);
* ``stage-augment-keras``: the same augmentation as Keras's ``RandomFlip``,
  ``RandomRotation``, ``RandomZoom`` and ``RandomTranslation`` layers, one resampling each,
  as ferdata augmented before it had its own layer;
* ``numpy``: plain ``model.fit`` on in-memory float32 NumPy arrays, same model, optimizer,
  batch size and validation set; ``numpy-keras-bn`` the same with Keras's batch normalisation;
* ``numpy-xla``: the same, compiled with XLA (``jit_compile=True``), op determinism on.

The first epoch traces the graph and is reported apart; images/s is the median over the
later epochs (training plus validation, as a user waits for them), with their slowest and
fastest beside it: on a shared host, epochs of the same run can differ by half. CPU
seconds per 1,000 images tell the work apart from waiting when other jobs share the cores;
the estimate for two idle cores (2 / CPU seconds per image) assumes TensorFlow keeps both
busy, an upper bound. The images are random pixels: the cost of a step does not depend on
what the faces show.

    .venv/bin/python benchmarks/bench_train.py [--epochs 4] [--batch-size 128] [--variants stage,numpy]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

#: FER2013's Training class counts (28,709) and a PublicTest-size validation set.
TRAIN_COUNTS = [3995, 436, 4097, 7215, 4830, 3171, 4965]
VAL_SIZE = 3589
VARIANTS = ("stage", "stage-nondeterministic", "stage-no-onednn", "stage-keras-bn", "stage-augment",
            "stage-augment-keras", "numpy", "numpy-keras-bn", "numpy-xla")
#: Environment a variant's process runs with, beyond this one's.
VARIANT_ENV = {"stage-no-onednn": {"TF_ENABLE_ONEDNN_OPTS": "0"}}


def write_inputs(root: Path, seed: int = 0) -> None:
    """processed/dataset (val rows) and processed/balanced (train rows) with random faces."""
    import pyarrow as pa

    from ferdata.manifest import DATASET_SCHEMA, array_to_pixels, write_table
    from ferdata.taxonomy import CLASSES_7

    rng = np.random.default_rng(seed)

    def table(labels: np.ndarray, split: str) -> pa.Table:
        n = len(labels)
        images = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
        columns = {f.name: pa.nulls(n, f.type) for f in DATASET_SCHEMA}
        columns.update(
            sample_id=pa.array([f"fer2013-{split}-{i:06d}" for i in range(n)]), source=pa.array(["fer2013"] * n),
            label=pa.array([CLASSES_7[k] for k in labels]), label_index=pa.array(labels, pa.int16()),
            native_label=pa.array([str(k) for k in labels]), split=pa.array([split] * n),
            source_file=pa.array(["fer2013.csv"] * n), width=pa.array([48] * n, pa.int32()),
            height=pa.array([48] * n, pa.int32()), content_hash=pa.array([f"{i:040x}" for i in range(n)]),
            align_status=pa.array(["passthrough"] * n), pixels=array_to_pixels(images),
            origin=pa.array(["real"] * n))
        return pa.table(columns).cast(DATASET_SCHEMA)

    train_labels = np.repeat(np.arange(7), TRAIN_COUNTS)
    val_labels = rng.integers(0, 7, size=VAL_SIZE)
    write_table(table(train_labels, "train"), root / "balanced" / "manifest.parquet")
    write_table(table(val_labels, "val"), root / "dataset" / "manifest.parquet")
    (root / "balanced" / "augment.json").write_text(
        json.dumps({"flip": True, "rotation_deg": 10.0, "zoom": 0.1, "shift": 0.1}))


def _params(args: argparse.Namespace, variant: str):
    from ferdata.train import TrainParams

    return TrainParams(model="five_layer", epochs=args.epochs, batch_size=args.batch_size,
                       plateau_patience=0, early_stopping_patience=0, validate_every=1, class_weights=False,
                       augment=variant.startswith("stage-augment"), deterministic=variant != "stage-nondeterministic")


def _keras_augmentation(flip: bool, rotation_deg: float, zoom: float, shift: float, seed: int):
    """The augmentation as a chain of Keras's preprocessing layers, each resampling the batch."""
    from keras import Sequential, layers

    return Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(rotation_deg / 360.0, fill_mode="nearest", seed=seed + 1),
        layers.RandomZoom(zoom, fill_mode="nearest", seed=seed + 2),
        layers.RandomTranslation(shift, shift, fill_mode="nearest", seed=seed + 3),
    ], name="augmentation")


def run_variant(variant: str, root: Path, args: argparse.Namespace) -> dict:
    """Train one variant in this process: its epoch times and CPU seconds (from reading the
    Parquet files to the end of training)."""
    from ferdata import model as model_lib
    from ferdata import train
    from ferdata.manifest import read_table
    from ferdata.taxonomy import CLASSES_7

    params = _params(args, variant)
    if variant.endswith("-keras-bn"):  # the networks are built with Keras's layer instead of the fused one
        model_lib.FusedBatchNormalization = model_lib.layers.BatchNormalization
    if variant == "stage-augment-keras":
        model_lib.augmentation = _keras_augmentation
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    if variant.startswith("numpy"):
        x, y = train.labelled_images(read_table(root / "balanced" / "manifest.parquet"), CLASSES_7, root)
        xv, yv = train.labelled_images(read_table(root / "dataset" / "manifest.parquet"), CLASSES_7, root)
        x, xv = x.astype(np.float32), xv.astype(np.float32)
        train.seed_everything(params.seed, params.deterministic)
        net = model_lib.build_model(params.model, len(CLASSES_7))
        net.compile(optimizer=train.make_optimizer(params), loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"], jit_compile=variant == "numpy-xla")
        log = train.EpochLog()
        net.fit(x, y, batch_size=params.batch_size, epochs=params.epochs, validation_data=(xv, yv),
                shuffle=True, callbacks=[log], verbose=0)
        seconds, images = log.seconds, len(y)
    else:
        result = train.run_train(params, root / "balanced", root / "dataset", root / variant / "models",
                                 root / variant / "metrics")
        seconds = json.loads((root / variant / "metrics" / "train.json").read_text())["epoch_seconds"]
        images = result.train_images
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {"variant": variant, "images": images, "epoch_seconds": seconds, "cpu_seconds": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one variant in this process
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_variant(args.worker, args.dir, args)))
        return

    from rich.console import Console
    from rich.table import Table

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {list(VARIANTS)}")
    table = Table(title=f"five_layer on {sum(TRAIN_COUNTS):,} 48x48 images, batch {args.batch_size}, "
                        f"{args.epochs} epochs, 2 cores (target >= 500 images/s)")
    for col in ("variant", "first epoch s", "later epoch s (median)", "images/s", "images/s range",
                "CPU s / 1k images", "images/s on 2 idle cores (est.)", "target"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        write_inputs(root)
        for variant in variants:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", variant, "--dir", str(root), "--epochs", str(args.epochs),
                 "--batch-size", str(args.batch_size)], check=True, capture_output=True, text=True,
                env={**os.environ, **VARIANT_ENV.get(variant, {})})
            row = json.loads(out.stdout.strip().splitlines()[-1])
            later = row["epoch_seconds"][1:] or row["epoch_seconds"]
            median = float(np.median(later))
            rate = row["images"] / median
            cpu_per_image = row["cpu_seconds"] / (row["images"] * args.epochs)
            table.add_row(variant, f"{row['epoch_seconds'][0]:.1f}", f"{median:.1f}", f"{rate:,.0f}",
                          f"{row['images'] / max(later):,.0f}-{row['images'] / min(later):,.0f}",
                          f"{1000 * cpu_per_image:.2f}", f"{2 / cpu_per_image:,.0f}",
                          "met" if rate >= 500 else "missed")
    Console(width=150).print(table)
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}; above 2 means other jobs shared the cores")


if __name__ == "__main__":
    main()
