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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Group

from ferdata.evaluate_report import confusion_figure, per_class_table, recall_figure, save_figure, write_confusion_csv
from ferdata.files import write_json_atomic
from ferdata.layout import Layout
from ferdata.manifest import read_table, write_table
from ferdata.params import ParamsError
from ferdata.predictions import predictions_table
from ferdata.private_test import NO_ANSWERS, PRIVATE_TEST, private_test_answers
from ferdata.scores import class_scores, source_scores
from ferdata.test_time import MAX_TTA_SHIFT, TestTimeViews, predict
from ferdata.train import labelled_images, load_model

SPLITS = ("train", "val", "test")


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
            save_figure(figure(scores, classes, split), plots[-1])
        plots.append(plots_dir / f"confusion_{split}.csv")
        write_confusion_csv(plots[-1], [classes[k] for k in labels[rows]], [classes[k] for k in predicted[rows]])
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
