"""The evaluate stage: per-class recall, precision, F1, confusion matrices and per-source
scores of the trained model on the dataset's val / test splits, plus every prediction.

Writes ``metrics/eval.json`` (DVC metrics: per split, numbers and per-class dicts; the
confusion matrices are lists, which ``dvc metrics show`` skips), ``plots/confusion_<split>.png``,
``plots/recall_<split>.png``, ``plots/confusion_<split>.csv`` (actual, predicted: DVC's
confusion template) and ``processed/predictions.parquet``. ``logits`` there are the outputs
of the model's dense ``logits`` layer, before its softmax. When FER2013 was ingested,
eval.json's ``fer2013_private_test`` scores every PrivateTest row as published
(:mod:`ferdata.private_test`), the figure other work on FER2013 reports, and
``processed/fer2013_private_test.parquet`` holds each of those faces' answer (no rows
without FER2013).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from matplotlib.figure import Figure
from rich.console import Group
from rich.table import Table

from ferdata import model as model_lib
from ferdata.layout import Layout
from ferdata.manifest import read_table, write_table
from ferdata.params import ParamsError
from ferdata.export import write_json_atomic
from ferdata.predictions import predictions_table
from ferdata.private_test import NO_ANSWERS, PRIVATE_TEST, private_test_answers
from ferdata.train import labelled_images, load_model

import keras  # noqa: E402  (after ferdata.model has chosen the TensorFlow backend)

SPLITS = ("train", "val", "test")

MAX_TTA_SHIFT = 12  # a quarter of the 48-pixel face


@dataclass
class EvaluateParams:
    """The ``evaluate:`` section of params.yaml."""

    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    tta_flip: bool = True  # average the logits of each image and its mirror image
    tta_shift: int = 3  # also the images moved this many pixels up, down, left and right; 0 = off
    batch_size: int = 256

    def __post_init__(self) -> None:
        unknown = [s for s in self.splits if s not in SPLITS]
        if not self.splits or unknown or len(set(self.splits)) != len(self.splits):
            raise ParamsError(f"params.yaml [evaluate].splits: distinct names from {list(SPLITS)}, "
                              f"not {self.splits}")
        if self.batch_size < 1:
            raise ParamsError(f"params.yaml [evaluate].batch_size: at least 1, not {self.batch_size}")
        if not 0 <= self.tta_shift <= MAX_TTA_SHIFT:
            raise ParamsError(f"params.yaml [evaluate].tta_shift: pixels from 0 to {MAX_TTA_SHIFT}, not {self.tta_shift}")

    @property
    def views(self) -> TestTimeViews:
        """The test-time views these params ask for."""
        return TestTimeViews(self.tta_flip, self.tta_shift)


@dataclass(frozen=True)
class TestTimeViews:
    """Which views of each face a prediction averages the logits of: the face itself, its
    mirror image (``flip``), and the face moved ``shift`` pixels each way (each mirrored too
    with ``flip``)."""

    flip: bool = False
    shift: int = 0

    def of(self, batch: np.ndarray) -> Iterator[np.ndarray]:
        """The views of a (N, 48, 48, 1) batch, one at a time; borders repeat the edge pixels,
        as the training augmentation's shifts fill them."""
        faces = [batch, batch[:, :, ::-1]] if self.flip else [batch]
        for face in faces:
            yield face
            if self.shift:
                s, size = self.shift, face.shape[1]
                padded = np.pad(face, ((0, 0), (s, s), (s, s), (0, 0)), mode="edge")
                for dy, dx in ((-s, 0), (s, 0), (0, -s), (0, s)):
                    yield padded[:, s + dy:s + dy + size, s + dx:s + dx + size]


@dataclass
class EvalResult:
    """The stage's outcome, for the summary the CLI prints."""

    classes: tuple[str, ...]
    metrics: dict[str, dict]  # split -> the split's section of eval.json
    predictions_path: Path
    plots: list[Path]
    private_test: dict | None = None  # eval.json's fer2013_private_test, when there is one
    private_test_path: Path | None = None  # each of those faces' answer

    def summary(self) -> Group:
        """One per-class table per evaluated split, and the score on FER2013's PrivateTest."""
        lines = [per_class_table(self.metrics[s], self.classes, s) for s in self.metrics]
        if self.private_test is not None:
            scores = self.private_test
            lines.append(f"FER2013 PrivateTest as published ({scores['faces']:,} faces, "
                         f"{scores['outside_test_split']:,} of them left out of the test split, "
                         f"{scores['faces'] - scores['answered']:,} without aligned pixels): "
                         f"accuracy {scores['accuracy']:.1%}, macro recall {scores['macro_recall']:.1%}")
        answers = "" if self.private_test_path is None else f", {self.private_test_path}"
        lines.append(f"predictions: {self.predictions_path}{answers}; plots: {', '.join(p.name for p in self.plots)}")
        return Group(*lines)


def shift_beyond_training(views: TestTimeViews, trained_shift: float) -> str | None:
    """A warning when the test-time shifts move faces further than training's online shift
    (``trained_shift`` pixels) ever did; None when they do not."""
    if views.shift <= trained_shift:
        return None
    return (f"evaluate.tta_shift moves faces {views.shift} px, beyond the training's online shift "
            f"({trained_shift:.1f} px): views the model never saw can cost accuracy; compare on val "
            f"(benchmarks/tta_views.py) or set evaluate.tta_shift: 0")


def predict(net: keras.Model, images: np.ndarray, views: TestTimeViews = TestTimeViews(),
            batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Logits and probabilities (N, C) float32 for (N, 48, 48[, 1]) images in 0..255.

    The logits are the mean over the test-time ``views`` of each image, and the
    probabilities their softmax.
    """
    heads = model_lib.heads(net)
    all_logits = [model_lib.predict_batches(heads, view, batch_size)[1]
                  for view in views.of(model_lib.as_batch(images))]
    logits = np.mean(all_logits, axis=0)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(logits, np.float32), np.asarray(shifted / shifted.sum(axis=1, keepdims=True), np.float32)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (C, C): row = actual class, column = predicted class."""
    flat = np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's ``zero_division=0``)."""
    return np.divide(num, den, out=np.zeros(len(num), dtype=np.float64), where=den > 0)


def _per_class(classes: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {c: float(v) for c, v in zip(classes, values)}


def class_scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Accuracy, macro recall (balanced accuracy: over classes present), macro precision and
    F1 (over all classes), per-class recall / precision / F1 / support, confusion matrices.

    Undefined ratios (no support, no predictions) are 0, as in scikit-learn's
    ``classification_report(..., zero_division=0)``.
    """
    cm = confusion(y_true, y_pred, len(classes))
    support, predicted, hits = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    recall, precision = _ratio(hits, support), _ratio(hits, predicted)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = support > 0
    normalized = cm / np.maximum(support, 1)[:, None]
    return {
        "count": int(cm.sum()),
        "accuracy": float(hits.sum() / max(cm.sum(), 1)),
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_precision": float(precision.mean()),
        "macro_f1": float(f1.mean()),
        "recall": _per_class(classes, recall),
        "precision": _per_class(classes, precision),
        "f1": _per_class(classes, f1),
        "support": {c: int(v) for c, v in zip(classes, support)},
        "confusion": {"counts": cm.tolist(), "normalized": np.round(normalized, 6).tolist()},
    }


def source_scores(y_true: np.ndarray, y_pred: np.ndarray, sources: Sequence[str],
                  classes: Sequence[str], order: Sequence[str]) -> dict[str, dict]:
    """Per source in ``order`` that has rows here: count, accuracy, macro recall, and recall
    and support of each class the source has samples of."""
    sources = np.asarray(sources, dtype=object)
    out = {}
    for name in order:
        rows = sources == name
        if not rows.any():
            continue
        scores = class_scores(y_true[rows], y_pred[rows], classes)
        present = [c for c in classes if scores["support"][c] > 0]
        out[name] = {
            "count": scores["count"], "accuracy": scores["accuracy"], "macro_recall": scores["macro_recall"],
            "recall": {c: scores["recall"][c] for c in present},
            "support": {c: scores["support"][c] for c in present},
        }
    return out


def per_class_table(split_metrics: dict, classes: Sequence[str], split: str) -> Table:
    """Per class: support, recall, precision, F1 and, where several sources are scored, recall
    per source; then the totals."""
    by_source = split_metrics["by_source"] if len(split_metrics["by_source"]) > 1 else {}
    table = Table(title=f"evaluate {split}: accuracy {split_metrics['accuracy']:.3f}, "
                        f"macro recall {split_metrics['macro_recall']:.3f} ({split_metrics['count']} images)")
    for col in ("class", "support", "recall", "precision", "F1", *(f"recall {s}" for s in by_source)):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in classes:
        per_source = [f"{v['recall'][c]:.3f}" if c in v["recall"] else "-" for v in by_source.values()]
        table.add_row(c, str(split_metrics["support"][c]), f"{split_metrics['recall'][c]:.3f}",
                      f"{split_metrics['precision'][c]:.3f}", f"{split_metrics['f1'][c]:.3f}", *per_source)
    table.add_row("all", str(split_metrics["count"]), f"{split_metrics['macro_recall']:.3f}",
                  f"{split_metrics['macro_precision']:.3f}", f"{split_metrics['macro_f1']:.3f}",
                  *(f"{v['macro_recall']:.3f}" for v in by_source.values()), end_section=True)
    return table


def _save_figure(fig: Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    tmp.replace(path)


def confusion_figure(split_metrics: dict, classes: Sequence[str], split: str) -> Figure:
    """The row-normalised confusion matrix as a heat map, each cell labelled with its count."""
    counts = np.asarray(split_metrics["confusion"]["counts"])
    normalized = np.asarray(split_metrics["confusion"]["normalized"])
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    image = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the actual class")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                    color="white" if normalized[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(f"{split}: confusion (accuracy {split_metrics['accuracy']:.3f})")
    fig.tight_layout()
    return fig


def recall_figure(split_metrics: dict, classes: Sequence[str], split: str) -> Figure:
    """Per-class recall bars, each labelled with its support, and the macro recall as a line."""
    recall = [split_metrics["recall"][c] for c in classes]
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    bars = ax.bar(classes, recall, color="tab:blue")
    ax.bar_label(bars, labels=[f"n={split_metrics['support'][c]}" for c in classes], fontsize=8)
    ax.axhline(split_metrics["macro_recall"], color="tab:red", linestyle="--")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("recall")
    ax.set_title(f"{split}: per-class recall (dashed: macro recall {split_metrics['macro_recall']:.3f})")
    fig.tight_layout()
    return fig


def _write_confusion_csv(path: Path, actual: Sequence[str], predicted: Sequence[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in zip(actual, predicted)))
    tmp.replace(path)


def run_evaluate(params: EvaluateParams, models_dir: Path, dataset_dir: Path, metrics_dir: Path,
                 plots_dir: Path, predictions_path: Path, pipeline: Layout | None = None) -> EvalResult:
    """Score ``models_dir``'s model on ``params.splits`` of ``dataset_dir/manifest.parquet``;
    write ``metrics_dir/eval.json``, the plots in ``plots_dir`` and ``predictions_path``.
    With ``pipeline`` (the folder the stages write under), also score FER2013's PrivateTest
    as published, when it was ingested."""
    net, classes = load_model(models_dir)
    path = Path(dataset_dir) / "manifest.parquet"
    table = read_table(path)
    dataset_splits = dict(zip(table["sample_id"].to_pylist(), table["split"].to_pylist()))
    table = table.filter(pc.is_in(table["split"], pa.array(params.splits)))
    missing = [s for s in params.splits if s not in set(table["split"].to_pylist())]
    if missing:
        raise ValueError(f"{path}: no rows in split(s) {missing}; set evaluate.splits to splits the dataset has")
    images, labels = labelled_images(table, classes, path)
    logits, probabilities = predict(net, images, params.views, params.batch_size)
    predictions = predictions_table(table, classes, logits, probabilities)
    predicted = probabilities.argmax(axis=1)
    splits, sources = np.asarray(table["split"].to_pylist()), np.asarray(table["source"].to_pylist())
    source_order = list(dict.fromkeys(sources.tolist()))

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    metrics, plots = {}, []
    for split in params.splits:
        rows = splits == split
        scores = class_scores(labels[rows], predicted[rows], classes)
        scores["by_source"] = source_scores(labels[rows], predicted[rows], sources[rows], classes, source_order)
        metrics[split] = scores
        for name, figure in (("confusion", confusion_figure), ("recall", recall_figure)):
            plots.append(plots_dir / f"{name}_{split}.png")
            _save_figure(figure(scores, classes, split), plots[-1])
        plots.append(plots_dir / f"confusion_{split}.csv")
        _write_confusion_csv(plots[-1], [classes[k] for k in labels[rows]], [classes[k] for k in predicted[rows]])
    private_test = None
    if pipeline is not None:
        private_test = private_test_answers(lambda faces: predict(net, faces, params.views, params.batch_size),
                                            classes, pipeline, dataset_splits, predictions)
        write_table(NO_ANSWERS if private_test is None else private_test.answers, pipeline.private_test_predictions)
    private_scores = None if private_test is None else private_test.scores
    write_json_atomic(Path(metrics_dir) / "eval.json",
                      metrics if private_scores is None else {**metrics, PRIVATE_TEST: private_scores})
    write_table(predictions, Path(predictions_path))
    return EvalResult(classes=classes, metrics=metrics, predictions_path=Path(predictions_path), plots=plots,
                      private_test=private_scores,
                      private_test_path=None if private_test is None else pipeline.private_test_predictions)
