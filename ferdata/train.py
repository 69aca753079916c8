"""The train stage: fit a compact CNN on the balanced training set, validate on val.

Reads ``processed/balanced/manifest.parquet`` (the training rows, with the balance
stage's ``class_weights.json`` and ``augment.json`` beside it) and the val rows of
``processed/dataset/manifest.parquet``. Images are decoded once from the Parquet pixels
into memory and fed through a seeded tf.data pipeline; labels are the manifest's
``label_index``, checked against the taxonomy's class order. Writes ``models/model.keras``,
``models/classes.json`` and ``metrics/train.json`` (per-epoch history for a DVC plot).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ferdata import model as model_lib
from ferdata.files import replace_dir, write_json, write_json_atomic
from ferdata.manifest import pixels_to_array, read_table
from ferdata.params import ParamsError
from ferdata.progress import epoch_line, is_terminal, plain_line, progress_bar
from ferdata.taxonomy import CLASSES_7

import keras  # noqa: E402  (after ferdata.model has chosen the TensorFlow backend)
import tensorflow as tf  # noqa: E402

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "plateau")
MODEL_FILE, CLASSES_FILE = "model.keras", "classes.json"
CLASS_WEIGHTS_FILE, AUGMENT_FILE = "class_weights.json", "augment.json"
AUGMENT_KEYS = ("flip", "rotation_deg", "zoom", "shift")


@dataclass
class TrainParams:
    """The ``train:`` section of params.yaml. With early stopping the saved weights are those
    of the epoch with the best val accuracy; without it, the last epoch's."""

    seed: int = 42
    model: str = "five_layer"  # five_layer | baseline
    epochs: int = 50
    batch_size: int = 128
    optimizer: str = "adam"  # adam | sgd (momentum 0.9)
    learning_rate: float = 0.001
    weight_decay: float = 0.0001  # decoupled, applied by the optimizer; 0 = none
    label_smoothing: float = 0.0  # share of each target moved evenly onto every class; 0 = none
    schedule: str = "cosine"  # cosine (decay to 0 over the epochs) | plateau (halve on a val_loss plateau)
    plateau_patience: int = 3  # schedule plateau: epochs without a lower val_loss before halving; 0 = never
    early_stopping_patience: int = 0  # epochs without a higher val_accuracy before stopping; 0 = never
    validate_every: int = 5  # pass over val every N epochs and after the last; every epoch when val steers the run
    class_weights: bool = True  # weight the loss by the balance stage's class_weights.json
    class_weights_from: float = 0.0  # share of the epochs run unweighted first (deferred re-weighting); 0 = none
    augment: bool = True  # online augmentation with the balance stage's augment.json
    deterministic: bool = True  # TensorFlow op determinism (no measurable cost on CPU)

    def __post_init__(self) -> None:
        where = "params.yaml [train]"
        if self.model not in model_lib.MODELS:
            raise ParamsError(f"{where}.model: one of {sorted(model_lib.MODELS)}, not {self.model!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ParamsError(f"{where}.optimizer: one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ParamsError(f"{where}.schedule: one of {SCHEDULES}, not {self.schedule!r}")
        for name in ("epochs", "batch_size", "validate_every"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{where}.{name}: at least 1, not {getattr(self, name)}")
        if isinstance(self.class_weights_from, bool) or not isinstance(self.class_weights_from, (int, float)) \
                or not 0 <= self.class_weights_from < 1:
            raise ParamsError(f"{where}.class_weights_from: a share of the epochs from 0 to below 1, "
                              f"not {self.class_weights_from!r}")
        for name in ("plateau_patience", "early_stopping_patience"):
            if getattr(self, name) < 0:
                raise ParamsError(f"{where}.{name}: 0 (off) or more, not {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ParamsError(f"{where}.label_smoothing: from 0 (none) to below 1, not {self.label_smoothing}")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ParamsError(f"{where}: learning_rate > 0 and weight_decay >= 0, "
                              f"not {self.learning_rate} and {self.weight_decay}")

    @property
    def class_weights_start(self) -> int:
        """The epoch (from 1) the class weights start: after ``class_weights_from`` of the
        epochs, rounded; the last epoch at the latest."""
        return min(round(self.class_weights_from * self.epochs) + 1, self.epochs)

    @property
    def validation_epochs(self) -> list[int]:
        """The epochs (from 1) that end with a pass over val: every epoch when early stopping
        or the plateau schedule watches val, else every ``validate_every``-th and the last.
        Without those, val only reports: the weights are the same however often it runs."""
        steered = self.early_stopping_patience or (self.schedule == "plateau" and self.plateau_patience)
        every = 1 if steered else self.validate_every
        return sorted({*range(every, self.epochs + 1, every), self.epochs})

    @property
    def watched_from(self) -> int:
        """The first epoch early stopping watches and may keep: the first weighted one when
        the class weights are deferred, so that the kept model is a balanced one."""
        return self.class_weights_start if self.class_weights else 1

    def recipe(self) -> str:
        """The recipe as it runs, in one line: a setting the schedule ignores is left out."""
        if self.schedule == "cosine":
            schedule = f"cosine to 0 over {self.epochs} epochs"
        elif self.plateau_patience:
            schedule = (f"halved after {self.plateau_patience} epochs without a lower val loss, "
                        f"up to {self.epochs} epochs")
        else:
            schedule = f"constant rate, {self.epochs} epochs"
        parts = [f"{self.optimizer} {self.learning_rate:g}", f"weight decay {self.weight_decay:g}",
                 f"batch {self.batch_size}", schedule]
        if self.early_stopping_patience:
            parts.append(f"early stopping after {self.early_stopping_patience} epochs without a higher val accuracy")
        if self.label_smoothing:
            parts.append(f"label smoothing {self.label_smoothing:g}")
        if not self.class_weights:
            parts.append("no class weights")
        elif self.class_weights_start > 1:
            parts.append(f"class weights from epoch {self.class_weights_start}")
        else:
            parts.append("class weights")
        parts.append("online augmentation" if self.augment else "no augmentation")
        return ", ".join(parts)


@dataclass
class TrainResult:
    """The stage's outcome, for the summary the CLI prints."""

    model: str
    recipe: str  # TrainParams.recipe(): what the run did
    parameters: int
    model_bytes: int
    train_images: int
    val_images: int
    epochs_run: int
    kept_epoch: int  # whose weights were saved: best val accuracy with early stopping, else the last
    kept_val_accuracy: float
    images_per_second: float
    model_path: Path

    def summary(self) -> Group:
        """One screen: the model, the data, where training stopped, how fast it ran; the recipe below."""
        table = Table(title=f"train: {self.model} -> {self.model_path}", show_header=False)
        table.add_column("", justify="left")
        table.add_column("", justify="right")
        for key, value in (
            ("parameters", f"{self.parameters:,}"), ("model size", f"{self.model_bytes / 1e6:.1f} MB"),
            ("train / val images", f"{self.train_images:,} / {self.val_images:,}"),
            ("epochs run", str(self.epochs_run)),
            ("kept epoch (val accuracy)", f"{self.kept_epoch} ({self.kept_val_accuracy:.3f})"),
            ("throughput", f"{self.images_per_second:,.0f} images/s"),
        ):
            table.add_row(key, value)
        return Group(table, Text(f"recipe: {self.recipe}"))


def labelled_images(table: pa.Table, classes: Sequence[str], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A manifest's images (N, 48, 48, 1) uint8 and label indexes (N,) int32, after checking
    that every ``label_index`` is the position of its ``label`` in ``classes``."""
    labels = np.asarray(table["label_index"].to_numpy(zero_copy_only=False), dtype=np.int32)
    names = table["label"].to_pylist()
    bad = sorted({(n, int(k)) for n, k in zip(names, labels)
                  if not 0 <= k < len(classes) or classes[k] != n})
    if bad:
        raise ValueError(f"{path}: label / label_index pairs that disagree with the class order "
                         f"{list(classes)}: {bad[:5]}")
    return pixels_to_array(table["pixels"])[..., None], labels


def split_rows(table: pa.Table, split: str) -> pa.Table:
    """The rows of one split."""
    return table.filter(pc.equal(table["split"], split))


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int,
                 shuffle_seed: int | None = None, augment: keras.layers.Layer | None = None) -> tf.data.Dataset:
    """Batches of (float32 images in 0..255, int32 labels) from in-memory arrays.

    With ``shuffle_seed`` the whole set is reshuffled every epoch in a seeded order; the
    optional ``augment`` layer then transforms each batch (in training mode).
    """
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    if augment is not None:
        ds = ds.map(lambda x, y: (augment(x, training=True), y))
    return ds.prefetch(tf.data.AUTOTUNE)


def _read_json(path: Path, needed_for: str) -> dict:
    """A JSON object from ``path``; a missing or malformed file is an error naming it."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; {needed_for}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def read_class_weights(path: Path, classes: Sequence[str]) -> dict[int, float]:
    """The balance stage's class_weights.json (its ``by_index`` table) as ``label index ->
    weight``; classes it does not name (absent from train) get weight 1."""
    data = _read_json(path, "train.class_weights needs the balance stage's class weights")
    if "by_index" not in data:
        raise ValueError(f"{path}: no by_index table; rerun the balance stage")
    raw = {int(k): v for k, v in data["by_index"].items()}
    bad = {k: v for k, v in raw.items()
           if not 0 <= k < len(classes) or not isinstance(v, (int, float)) or v < 0}
    if bad:
        raise ValueError(f"{path}: weights must be numbers >= 0 for label indexes 0..{len(classes) - 1}: {bad}")
    return {k: float(raw.get(k, 1.0)) for k in range(len(classes))}


def read_augment(path: Path, seed: int) -> keras.layers.Layer:
    """The augmentation layer described by augment.json ({flip, rotation_deg, zoom, shift})."""
    data = _read_json(path, "train.augment needs the balance stage's augmentation parameters")
    missing = [k for k in AUGMENT_KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}; expected {list(AUGMENT_KEYS)}")
    return augmentation_from(data, seed)


def augmentation_from(config: dict, seed: int) -> keras.layers.Layer:
    """The augmentation layer for an augment.json-style ``config`` ({flip, rotation_deg, zoom, shift})."""
    return model_lib.augmentation(bool(config["flip"]), float(config["rotation_deg"]), float(config["zoom"]),
                                  float(config["shift"]), seed)


def make_optimizer(params: TrainParams) -> keras.optimizers.Optimizer:
    """SGD with momentum 0.9 or Adam; weight decay is Keras's decoupled decay (none at 0)."""
    decay = params.weight_decay or None
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(params.learning_rate, momentum=0.9, weight_decay=decay)
    return keras.optimizers.Adam(params.learning_rate, weight_decay=decay)


def make_loss(params: TrainParams) -> str | Callable:
    """Cross-entropy on class indices; with ``label_smoothing`` s, against targets of
    1 - s + s/K for the labelled class and s/K for each of the K - 1 others."""
    if not params.label_smoothing:
        return "sparse_categorical_crossentropy"
    smoothing = params.label_smoothing

    def smoothed_crossentropy(labels, probabilities):
        targets = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(labels, "int32"), (-1,)),
                                    keras.ops.shape(probabilities)[-1])
        return keras.losses.categorical_crossentropy(targets, probabilities, label_smoothing=smoothing)

    return smoothed_crossentropy


class EpochLog(keras.callbacks.Callback):
    """Each epoch's learning rate (the one it trained with) and wall time."""

    def __init__(self) -> None:
        super().__init__()
        self.rates: list[float] = []
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class EpochLines(keras.callbacks.Callback):
    """A plain line per epoch (:func:`ferdata.progress.epoch_line`) for logs, where no bar is
    drawn; the time left counts ``later_epochs`` more epochs after this fit (other folds)."""

    def __init__(self, label: str, epochs: int, later_epochs: int = 0, write=plain_line) -> None:
        super().__init__()
        self.label, self.epochs, self.later_epochs, self.write = label, epochs, later_epochs, write
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        left = (self.epochs - epoch - 1 + self.later_epochs) * float(np.mean(self.seconds))
        self.write(epoch_line(self.label, epoch + 1, self.epochs, logs or {}, self.seconds[-1], left))


@contextmanager
def epoch_progress(label: str, epochs: int, later_epochs: int = 0) -> Iterator[keras.callbacks.Callback]:
    """A callback that shows training's progress: a bar on a terminal, else a line per epoch."""
    if not is_terminal():
        yield EpochLines(label, epochs, later_epochs)
        return
    with progress_bar(f"{label} epochs", total=epochs) as advance:
        yield keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: advance(1))


class ClassWeightsFrom(keras.callbacks.Callback):
    """Class weights that start at an epoch: each training face's loss is weighted by its
    class's weight from ``start_epoch`` (from 1) on, and by 1 before it (deferred
    re-weighting: the features are learned on the faces as they come, then the classes are
    balanced). From epoch 1 this is Keras's ``class_weight``; val is never weighted."""

    def __init__(self, class_weight: dict[int, float], start_epoch: int) -> None:
        super().__init__()
        self.weights = np.array([class_weight[k] for k in range(len(class_weight))], np.float32)
        self.start_epoch = start_epoch
        self.table = tf.Variable(self.weights if start_epoch <= 1 else np.ones_like(self.weights), trainable=False)

    def weigh(self, train: tf.data.Dataset) -> tf.data.Dataset:
        """``train``'s (images, labels) batches with each face's weight, read from the table as
        each batch is made."""
        return train.map(lambda x, y: (x, y, tf.gather(self.table, y)))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.start_epoch:
            self.table.assign(self.weights)


def cosine_rate(epoch: int, epochs: int, base: float) -> float:
    """The learning rate of ``epoch`` (from 0) when ``base`` decays to 0 along a half cosine
    over ``epochs``: ``base`` for the first epoch, ``base / 2`` half-way."""
    return base * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def _callbacks(params: TrainParams) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = []
    if params.schedule == "cosine":
        callbacks.append(keras.callbacks.LearningRateScheduler(
            lambda epoch: cosine_rate(epoch, params.epochs, params.learning_rate)))
    elif params.plateau_patience:
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                                           patience=params.plateau_patience))
    if params.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max",
                                                       patience=params.early_stopping_patience,
                                                       restore_best_weights=True,
                                                       start_from_epoch=params.watched_from - 1))
    return callbacks


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; with ``deterministic``, deterministic kernels too."""
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def fit(net: keras.Model, train: tf.data.Dataset, val: tf.data.Dataset, params: TrainParams,
        class_weight: dict[int, float] | None = None, label: str = "train") -> tuple[list[dict], list[float]]:
    """Compile and fit ``net``; the per-epoch history rows (val's scores None after an epoch
    not followed by a pass over val) and each epoch's seconds. Progress is shown under
    ``label`` (a bar, or a line per epoch)."""
    model_lib.fit_batch_norm_window(net, params.epochs * int(train.cardinality()))
    net.compile(optimizer=make_optimizer(params), loss=make_loss(params), metrics=["accuracy"])
    log = EpochLog()
    callbacks = [*_callbacks(params), log]
    if class_weight is not None:
        weighting = ClassWeightsFrom(class_weight, params.class_weights_start)
        train = weighting.weigh(train)
        callbacks.append(weighting)
    scored = params.validation_epochs
    with epoch_progress(label, params.epochs) as shown:
        history = net.fit(train, validation_data=val, epochs=params.epochs, callbacks=[*callbacks, shown],
                          validation_freq=scored, shuffle=False, verbose=0)
    validated = [epoch for epoch in scored if epoch <= len(log.rates)]
    val_scores = {key: dict(zip(validated, history.history[key])) for key in ("val_loss", "val_accuracy")}
    rows = []
    for i, lr in enumerate(log.rates):
        row = {"epoch": i + 1, **{k: float(history.history[k][i]) for k in ("loss", "accuracy")}}
        for key, scores in val_scores.items():
            row[key] = float(scores[i + 1]) if i + 1 in scores else None  # None: val not run after this epoch
        row["lr"] = float(f"{lr:.6g}")  # the float32 variable, printed as it was set
        rows.append(row)
    return rows, log.seconds


def kept_row(history: list[dict], params: TrainParams) -> dict:
    """The history row of the epoch whose weights a fit keeps: with early stopping (which
    restores it) the best val accuracy from ``params.watched_from`` on, else the last epoch."""
    if not params.early_stopping_patience:
        return history[-1]
    return max((row for row in history if row["epoch"] >= params.watched_from), key=lambda row: row["val_accuracy"])


def throughput(train_images: int, seconds: Sequence[float]) -> float:
    """Training images per second over the epochs after the first (which traces the graph
    and fills the pipeline); over the first when it is the only one. Includes validation."""
    timed = list(seconds[1:]) or list(seconds)
    return train_images * len(timed) / sum(timed)


def run_train(params: TrainParams, balanced_dir: Path, dataset_dir: Path, models_dir: Path,
              metrics_dir: Path, taxonomy_classes: Sequence[str] = CLASSES_7) -> TrainResult:
    """Train on ``balanced_dir/manifest.parquet``, validate on the val rows of
    ``dataset_dir/manifest.parquet``; write ``models_dir`` (model.keras, classes.json; replaced
    as a whole) and ``metrics_dir/train.json``."""
    classes = tuple(taxonomy_classes)
    balanced_dir, dataset_dir = Path(balanced_dir), Path(dataset_dir)
    train_path, dataset_path = balanced_dir / "manifest.parquet", dataset_dir / "manifest.parquet"
    train_table = read_table(train_path)
    leaked = sorted(set(train_table["split"].drop_null().to_pylist()) - {"train"})
    if leaked:
        raise ValueError(f"{train_path}: the training set holds rows of split(s) {leaked}")
    val_table = split_rows(read_table(dataset_path), "val")
    if train_table.num_rows == 0 or val_table.num_rows == 0:
        raise ValueError(f"need training rows ({train_path}: {train_table.num_rows}) and "
                         f"val rows ({dataset_path}: {val_table.num_rows})")
    x_train, y_train = labelled_images(train_table, classes, train_path)
    x_val, y_val = labelled_images(val_table, classes, dataset_path)

    seed_everything(params.seed, params.deterministic)
    augment = read_augment(balanced_dir / AUGMENT_FILE, params.seed) if params.augment else None
    class_weight = read_class_weights(balanced_dir / CLASS_WEIGHTS_FILE, classes) if params.class_weights else None
    net = model_lib.build_model(params.model, len(classes))
    history, seconds = fit(net, make_dataset(x_train, y_train, params.batch_size, params.seed, augment),
                           make_dataset(x_val, y_val, params.batch_size), params, class_weight)

    models_dir = Path(models_dir)
    models_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{models_dir.name}-", dir=models_dir.parent))
    try:
        tmp.chmod(0o755)
        model_lib.save_model(net, tmp / MODEL_FILE)
        write_json(tmp / CLASSES_FILE, {"classes": list(classes), "taxonomy": len(classes)})
        model_bytes = (tmp / MODEL_FILE).stat().st_size
        replace_dir(tmp, models_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    kept = kept_row(history, params)
    result = TrainResult(
        model=params.model, recipe=params.recipe(), parameters=int(net.count_params()), model_bytes=model_bytes,
        train_images=len(y_train), val_images=len(y_val), epochs_run=len(history),
        kept_epoch=kept["epoch"], kept_val_accuracy=kept["val_accuracy"],
        images_per_second=throughput(len(y_train), seconds), model_path=models_dir / MODEL_FILE)
    report = {k: v for k, v in asdict(result).items() if k != "model_path"}
    report.update(epoch_seconds=[round(t, 3) for t in seconds], history=history)
    write_json_atomic(Path(metrics_dir) / "train.json", report)
    return result


def load_model(models_dir: Path) -> tuple[keras.Model, tuple[str, ...]]:
    """The trained model and its class order, from ``models_dir``."""
    models_dir = Path(models_dir)
    for name in (MODEL_FILE, CLASSES_FILE):
        if not (models_dir / name).exists():
            raise FileNotFoundError(f"{models_dir / name}: not found; run the train stage first")
    classes = tuple(json.loads((models_dir / CLASSES_FILE).read_text())["classes"])
    return keras.saving.load_model(models_dir / MODEL_FILE), classes
