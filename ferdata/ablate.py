"""The ablation: the same network, recipe and seeds on arms that differ only in their data.

Each arm (:mod:`ferdata.arms`) is trained with the ``train:`` section of params.yaml (its
``epochs`` replaced when the ablation asks for fewer) once per seed, ``seed`` to
``seed + repeats - 1``, through the train stage's own :func:`ferdata.train.fit`, and scored
on the same FER2013 PrivateTest faces. Scores are averaged over the seeds; every arm's
difference from ``raw`` gets a paired-bootstrap interval (:mod:`ferdata.bootstrap`), on all
those faces and again on those without a copy among the training rows (which ``raw``
trains on, and may have memorised). With FER+ votes (fer2013new.csv), the same answers are
also scored against the FER+ majority label of every test face that has one.

A run whose data, recipe and seed match one kept in ``processed/ablation_runs/`` is read
from there instead of being trained again (:mod:`ferdata.ablation_runs`; ``retrain``
trains every run).

Writes ``metrics/ablation.json`` (a DVC metric), ``processed/ablation/predictions.parquet``
(every arm's and seed's prediction per test face; ``ferdata compare --arm-a`` pairs them)
and ``processed/ablation/ablation.png``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from ferdata import bootstrap
from ferdata.ablation_report import ablation_figure
from ferdata.ablation_runs import RunStore, run_key
from ferdata.arm_training import ArmRun, train_and_predict
from ferdata.arms import ARMS, ArmData, ArmSources
from ferdata.balance import BalanceParams
from ferdata.evaluate import EvaluateParams
from ferdata.files import replace_dir, write_json_atomic
from ferdata.issue_precision import ferplus_reference
from ferdata.layout import Layout
from ferdata.manifest import write_table
from ferdata.params import ParamsError
from ferdata.predictions import with_classes
from ferdata.progress import duration, note
from ferdata.test_faces import TEST_SOURCE
from ferdata.train import TrainParams

REFERENCE = "raw"
FIGURE_FILE = "ablation.png"
_WHERE = "params.yaml [ablate]"


@dataclass
class AblateParams:
    """The ``ablate:`` section of params.yaml (the command's options override it)."""

    seed: int = 42
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    epochs: int | None = None  # None: train.epochs
    repeats: int = 1  # seeds seed .. seed + repeats - 1
    resamples: int = 2000  # paired-bootstrap resamples of the test faces
    retrain: bool = False  # train every run, even one kept in processed/ablation_runs/

    def __post_init__(self) -> None:
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown or len(set(self.arms)) != len(self.arms) or REFERENCE not in self.arms:
            raise ParamsError(f"{_WHERE}.arms: distinct arms from {list(ARMS)}, {REFERENCE!r} among them "
                              f"(every difference is taken from it), not {self.arms}")
        self.arms = [a for a in ARMS if a in self.arms]
        if self.epochs is not None and (isinstance(self.epochs, bool) or not isinstance(self.epochs, int)
                                        or self.epochs < 1):
            raise ParamsError(f"{_WHERE}.epochs: an integer >= 1, or null for train.epochs; not {self.epochs!r}")
        if not isinstance(self.retrain, bool):
            raise ParamsError(f"{_WHERE}.retrain: true or false, not {self.retrain!r}")
        for name in ("repeats", "resamples"):
            if getattr(self, name) < 1:
                raise ParamsError(f"{_WHERE}.{name}: at least 1, not {getattr(self, name)}")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.repeats))


@dataclass
class AblateResult:
    """What the command prints: the report (metrics/ablation.json) and the files written."""

    report: dict
    classes: tuple[str, ...]
    metrics_path: Path
    predictions_path: Path
    figure_path: Path


def trained_or_kept(store: RunStore, data: ArmData, test_ids: Sequence[str], params: TrainParams,
                    evaluate: EvaluateParams, balance: BalanceParams, classes: Sequence[str],
                    test_labels: np.ndarray, retrain: bool) -> ArmRun:
    """The run of ``data`` with ``params`` kept in ``store``, or (with ``retrain``, or none
    kept) a new one, trained, predicted and kept."""
    key = run_key(data, test_ids, params, balance.augment, balance.class_weight_power, evaluate.views, classes)
    kept = None if retrain else store.load(key, len(test_labels))
    if kept is not None:
        predicted = np.asarray(kept["predicted"], np.int64)
        note(f"ablate {data.name} seed {params.seed}: reused {store.path(key)}")
        return ArmRun(params.seed, predicted, predicted == test_labels, kept["epochs_run"], kept["kept_epoch"],
                      kept["seconds"], key, reused=True)
    run = train_and_predict(data, params, evaluate, balance, classes, test_labels)
    store.save(key, data.name, run.seed, run.predicted, run.epochs_run, run.kept_epoch, run.seconds)
    return replace(run, key=key)


def _number(value: float) -> float | None:
    """A float for JSON: NaN (an undefined recall) becomes null."""
    return None if value is None or math.isnan(value) else round(float(value), 6)


def _data_summary(data: ArmData, classes: Sequence[str]) -> dict:
    """What an arm trained on, and how many test faces it could answer for."""
    counts = np.bincount(data.train.labels, minlength=len(classes))
    return {
        "train_faces": len(data.train), "train_faces_made_by_balance": data.train.made,
        "val_faces": len(data.val),
        "train_per_class": {c: int(n) for c, n in zip(classes, counts)},
        "test_faces_answered": int(data.test_present.sum()),
        "test_faces_without_pixels": int((~data.test_present).sum()),
    }


def _per_seed(labels: np.ndarray, corrects: list[np.ndarray], n_classes: int) -> list[bootstrap.Scores]:
    """Each seed's scores on the test faces themselves (no resampling)."""
    ones = np.ones((1, len(labels)))
    return [bootstrap.scores(ones, labels, correct, n_classes) for correct in corrects]


def _mean_scores(per_seed: list[bootstrap.Scores], classes: Sequence[str]) -> dict:
    """Accuracy, macro recall and per-class recall, each the mean over the seeds, rounded for JSON."""
    mean = bootstrap.mean_scores(per_seed, classes)
    return {"accuracy": _number(mean["accuracy"]), "macro_recall": _number(mean["macro_recall"]),
            "recall": {c: _number(v) for c, v in mean["recall"].items()}}


def _arm_report(summary: dict, runs: list[ArmRun], labels: np.ndarray, classes: Sequence[str],
                difference: dict | None) -> dict:
    """One arm's entry in ablation.json: its data, its scores (mean over seeds) and their
    difference from raw with its interval."""
    per_seed = _per_seed(labels, [run.correct for run in runs], len(classes))
    return {
        **summary,
        **_mean_scores(per_seed, classes),  # recall null for a class the test set lacks
        "difference_from_raw": None if difference is None else {
            "accuracy": difference["accuracy"],
            "macro_recall": difference["macro_recall"],
            "recall": dict(zip(classes, difference["recall"])),
        },
        "repeats": [{"seed": run.seed, "accuracy": _number(s.accuracy[0]),
                     "macro_recall": _number(s.macro_recall[0]), "epochs_run": run.epochs_run,
                     "kept_epoch": run.kept_epoch, "seconds": round(run.seconds, 1),
                     "run": run.key, "reused": run.reused}
                    for run, s in zip(runs, per_seed)],
    }


def _subset_scores(labels: np.ndarray, keep: np.ndarray, runs: list[ArmRun],
                   reference: list[ArmRun] | None, classes: Sequence[str], params: AblateParams) -> dict:
    """An arm's scores on the test faces ``keep`` selects, against ``labels`` (the ingested
    labels, or another reference's), and their difference from raw's on the same faces."""
    kept = labels[keep]
    corrects = [run.predicted[keep] == kept for run in runs]
    difference = None
    if reference is not None:
        paired = bootstrap.paired_difference(kept, corrects, [r.predicted[keep] == kept for r in reference],
                                             len(classes), params.resamples, params.seed)
        difference = {"accuracy": paired["accuracy"], "macro_recall": paired["macro_recall"]}
    scores = _mean_scores(_per_seed(kept, corrects, len(classes)), classes)
    return {"faces": int(keep.sum()), "accuracy": scores["accuracy"], "macro_recall": scores["macro_recall"],
            "difference_from_raw": difference}


def ferplus_test_labels(ferplus_csv: Path, ids: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Each FER2013 test face's FER+ majority class index, -1 where FER+ has no majority
    among ``classes`` (no majority, not a face, unknown, or contempt under 7 classes)."""
    rows = pa.table({"source": pa.array([TEST_SOURCE] * len(ids)), "sample_id": pa.array(list(ids))})
    _, majority = ferplus_reference(rows, ferplus_csv)
    return np.array([classes.index(m) if m in classes else -1 for m in majority], dtype=np.int64)


def run_ablate(params: AblateParams, train: TrainParams, evaluate: EvaluateParams, balance: BalanceParams,
               layout: Layout, classes: Sequence[str], ferplus_csv: Path | None = None) -> AblateResult:
    """Train and score every arm in ``params.arms`` once per seed; write the report, the
    predictions and the figure (see the module docstring). ``ferplus_csv`` (fer2013new.csv)
    adds the scores against the test faces' FER+ majority labels."""
    classes = tuple(classes)
    recipe = replace(train, epochs=params.epochs or train.epochs)
    sources = ArmSources(layout, classes, balance)
    sources.check(params.arms)
    labels = sources.test.labels
    ferplus = None if ferplus_csv is None else ferplus_test_labels(ferplus_csv, sources.test.ids, classes)
    store = RunStore(layout.ablation_runs)
    summaries: dict[str, dict] = {}
    runs: dict[str, list[ArmRun]] = {}
    total, started, clock = len(params.arms) * len(params.seeds), 0, time.monotonic()
    for name in params.arms:
        data = sources.arm(name)
        summaries[name] = _data_summary(data, classes)
        note(f"ablate {name}: {len(data.train):,} train faces, {len(data.val):,} val, "
             f"{int(data.test_present.sum()):,} of {len(labels):,} test faces answered")
        runs[name] = []
        for seed in params.seeds:
            started += 1
            note(f"ablate run {started} of {total}: {name} seed {seed}, "
                 f"{duration(time.monotonic() - clock)} into the ablation")
            runs[name].append(trained_or_kept(store, data, sources.test.ids, replace(recipe, seed=seed), evaluate,
                                              balance, classes, labels, params.retrain))
        note(f"ablate {name}: {duration(sum(r.seconds for r in runs[name] if not r.reused))} of training")
    reference = [run.correct for run in runs[REFERENCE]]
    report_arms = {}
    for name in params.arms:
        difference = None
        if name != REFERENCE:
            difference = bootstrap.paired_difference(labels, [r.correct for r in runs[name]], reference,
                                                     len(classes), params.resamples, params.seed)
        report_arms[name] = _arm_report(summaries[name], runs[name], labels, classes, difference)
    copied = sources.test.copied_in_train
    for name in params.arms:
        reference_runs = runs[REFERENCE] if name != REFERENCE else None
        if copied is not None:
            report_arms[name]["without_train_copies"] = _subset_scores(
                labels, ~copied, runs[name], reference_runs, classes, params)
        if ferplus is not None:
            report_arms[name]["against_ferplus"] = _subset_scores(
                ferplus, ferplus >= 0, runs[name], reference_runs, classes, params)
    every_run = [run for arm_runs in runs.values() for run in arm_runs]
    reused = sum(run.reused for run in every_run)
    report = {
        "classes": list(classes),
        "test": {"source": TEST_SOURCE, "split": "test", "faces": len(labels),
                 "copied_in_train": None if copied is None else int(copied.sum()),
                 "ferplus_majority": None if ferplus is None else int((ferplus >= 0).sum()),
                 "support": {c: int(n) for c, n in zip(classes, np.bincount(labels, minlength=len(classes)))},
                 "rule": "every FER2013 PrivateTest row as ingested; a face an arm has no pixels for counts as wrong"},
        "params": {**asdict(params), "seeds": params.seeds, "confidence": bootstrap.CONFIDENCE,
                   "train": asdict(recipe), "balance_method": balance.method,
                   "class_weight_power": balance.class_weight_power,
                   "tta_flip": evaluate.tta_flip, "tta_shift": evaluate.tta_shift},
        "arms": report_arms,
        "runs": {"folder": str(layout.ablation_runs), "trained": len(every_run) - reused, "reused": reused,
                 "unusable": store.unusable},
    }
    metrics_path = layout.metrics / "ablation.json"
    write_json_atomic(metrics_path, report)
    _write_outputs(layout, sources.test.ids, labels, runs, report)
    return AblateResult(report, classes, metrics_path, layout.ablation_predictions, layout.ablation / FIGURE_FILE)


def _write_outputs(layout: Layout, ids: list[str], labels: np.ndarray, runs: dict[str, list[ArmRun]],
                   report: dict) -> None:
    """predictions.parquet and ablation.png, in a temporary folder renamed into place."""
    out_dir = layout.ablation
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        tables = []
        for name, arm_runs in runs.items():
            for run in arm_runs:
                answered = run.predicted >= 0
                tables.append(pa.table({
                    "arm": pa.array([name] * len(ids)), "seed": pa.array([run.seed] * len(ids), pa.int64()),
                    "sample_id": pa.array(ids), "label_index": pa.array(labels, pa.int16()),
                    "predicted": pa.array(run.predicted.astype(np.int16), pa.int16(), mask=~answered),
                    "correct": pa.array(run.correct),
                }))
        write_table(with_classes(pa.concat_tables(tables), report["classes"]), tmp / layout.ablation_predictions.name)
        figure = ablation_figure(report)
        figure.savefig(tmp / FIGURE_FILE, format="png", dpi=100, metadata={"Software": None})
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
