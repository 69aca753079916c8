"""The ablation: the same network, recipe and seeds on arms that differ only in their data.

Each arm (:mod:`ferdata.arms`) is trained with the ``train:`` section of params.yaml (its
``epochs`` replaced when the ablation asks for fewer) once per seed, ``seed`` to
``seed + repeats - 1``, through the train stage's own :func:`ferdata.train.fit`, and scored
on the same FER2013 PrivateTest faces, and on the same PublicTest (val) faces, where a
choice between arms is made before the test faces are read. Scores are averaged over the
seeds; every arm's difference from ``raw`` gets a paired-bootstrap interval
(:mod:`ferdata.bootstrap`), on all those faces and again on those without a copy among the
training rows (which ``raw`` trains on, and may have memorised). With FER+ votes
(fer2013new.csv), the same answers are also scored against the FER+ majority label of
every face that has one.

A run whose data, recipe and seed match one kept in ``processed/ablation_runs/`` is read
from there instead of being trained again (:mod:`ferdata.ablation_runs`; ``retrain``
trains every run).

Writes ``metrics/ablation.json`` (a DVC metric), ``processed/ablation/predictions.parquet``
(every arm's and seed's prediction per test and val face; ``ferdata compare --arm-a`` pairs them)
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
from ferdata.test_faces import TEST_SOURCE, TestFaces
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
    kept = None if retrain else store.load(key, len(test_labels), len(data.val))
    if kept is not None:
        predicted = np.asarray(kept["predicted"], np.int64)
        note(f"ablate {data.name} seed {params.seed}: reused {store.path(key)}")
        return ArmRun(params.seed, predicted, predicted == test_labels, np.asarray(kept["val_predicted"], np.int64),
                      kept["epochs_run"], kept["kept_epoch"], kept["seconds"], key, reused=True)
    run = train_and_predict(data, params, evaluate, balance, classes, test_labels)
    store.save(key, data.name, run.seed, run.predicted, run.val_predicted, run.epochs_run, run.kept_epoch,
               run.seconds)
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


def _difference(summary: dict | None, classes: Sequence[str]) -> dict | None:
    """A paired-bootstrap difference from raw, per-class recall by class name."""
    if summary is None:
        return None
    return {"accuracy": summary["accuracy"], "macro_recall": summary["macro_recall"],
            "recall": dict(zip(classes, summary["recall"]))}


def _subset_scores(labels: np.ndarray, keep: np.ndarray, predicted: list[np.ndarray],
                   reference: list[np.ndarray] | None, classes: Sequence[str], params: AblateParams) -> dict:
    """An arm's scores on the faces ``keep`` selects, from its answers ``predicted`` (one array
    per seed) against ``labels`` (the ingested labels, or another reference's), and their
    difference from raw's answers ``reference`` on the same faces."""
    kept = labels[keep]
    corrects = [answers[keep] == kept for answers in predicted]
    difference = None
    if reference is not None:
        paired = bootstrap.paired_difference(kept, corrects, [answers[keep] == kept for answers in reference],
                                             len(classes), params.resamples, params.seed)
        difference = {"accuracy": paired["accuracy"], "macro_recall": paired["macro_recall"]}
    scores = _mean_scores(_per_seed(kept, corrects, len(classes)), classes)
    return {"faces": int(keep.sum()), "accuracy": scores["accuracy"], "macro_recall": scores["macro_recall"],
            "difference_from_raw": difference}


def _split_scores(faces: TestFaces, answers: dict[str, list[np.ndarray]], ferplus: np.ndarray | None,
                  classes: Sequence[str], params: AblateParams) -> dict[str, dict]:
    """Every arm's scores on one split's ``faces`` from its ``answers`` (one array per seed,
    -1 where it has no pixels): the mean over the seeds and the difference from raw with its
    interval, on all the faces, on those without a copy among the training rows, and against
    their FER+ majority labels (``ferplus``, -1 where none)."""
    labels, copied, n = faces.labels, faces.copied_in_train, len(classes)
    reference = answers[REFERENCE]
    reference_correct = [p == labels for p in reference]
    scored = {}
    for name, predicted in answers.items():
        corrects = reference_correct if name == REFERENCE else [p == labels for p in predicted]
        difference = None if name == REFERENCE else bootstrap.paired_difference(
            labels, corrects, reference_correct, n, params.resamples, params.seed)
        entry = {**_mean_scores(_per_seed(labels, corrects, n), classes),  # recall null for a class the split lacks
                 "difference_from_raw": _difference(difference, classes)}
        others = None if name == REFERENCE else reference
        if copied is not None:
            entry["without_train_copies"] = _subset_scores(labels, ~copied, predicted, others, classes, params)
        if ferplus is not None:
            entry["against_ferplus"] = _subset_scores(ferplus, ferplus >= 0, predicted, others, classes, params)
        scored[name] = entry
    return scored


def _repeats(runs: list[ArmRun], labels: np.ndarray, classes: Sequence[str]) -> list[dict]:
    """Each seed's run: its test scores and how its training went."""
    per_seed = _per_seed(labels, [run.correct for run in runs], len(classes))
    return [{"seed": run.seed, "accuracy": _number(s.accuracy[0]), "macro_recall": _number(s.macro_recall[0]),
             "epochs_run": run.epochs_run, "kept_epoch": run.kept_epoch, "seconds": round(run.seconds, 1),
             "run": run.key, "reused": run.reused}
            for run, s in zip(runs, per_seed)]


def _answers_on(ids: Sequence[str], arm_ids: Sequence[str], arm_answers: list[np.ndarray]) -> list[np.ndarray]:
    """An arm's answers (one array per seed) for its own faces ``arm_ids``, placed on the
    faces ``ids`` (-1 where it has none)."""
    position = dict(zip(arm_ids, range(len(arm_ids))))
    rows = np.array([position.get(sid, -1) for sid in ids], np.int64)
    have = rows >= 0
    placed = []
    for answers in arm_answers:
        on_ids = np.full(len(ids), -1, np.int64)
        on_ids[have] = answers[rows[have]]
        placed.append(on_ids)
    return placed


def _faces_summary(faces: TestFaces, split: str, ferplus: np.ndarray | None, classes: Sequence[str],
                   rule: str) -> dict:
    """What one split's scored faces are: how many, how many have a copy in train or a FER+
    majority, each class's support, and the rule they are scored by."""
    return {"source": TEST_SOURCE, "split": split, "faces": len(faces.labels),
            "copied_in_train": None if faces.copied_in_train is None else int(faces.copied_in_train.sum()),
            "ferplus_majority": None if ferplus is None else int((ferplus >= 0).sum()),
            "support": {c: int(n) for c, n in zip(classes, np.bincount(faces.labels, minlength=len(classes)))},
            "rule": rule}


def ferplus_labels(ferplus_csv: Path, ids: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Each FER2013 face's FER+ majority class index, -1 where FER+ has no majority among
    ``classes`` (no majority, not a face, unknown, or contempt under 7 classes)."""
    rows = pa.table({"source": pa.array([TEST_SOURCE] * len(ids)), "sample_id": pa.array(list(ids))})
    _, majority = ferplus_reference(rows, ferplus_csv)
    return np.array([classes.index(m) if m in classes else -1 for m in majority], dtype=np.int64)


def run_ablate(params: AblateParams, train: TrainParams, evaluate: EvaluateParams, balance: BalanceParams,
               layout: Layout, classes: Sequence[str], ferplus_csv: Path | None = None) -> AblateResult:
    """Train and score every arm in ``params.arms`` once per seed; write the report, the
    predictions and the figure (see the module docstring). ``ferplus_csv`` (fer2013new.csv)
    adds the scores against the faces' FER+ majority labels."""
    classes = tuple(classes)
    recipe = replace(train, epochs=params.epochs or train.epochs)
    sources = ArmSources(layout, classes, balance)
    sources.check(params.arms)
    test, val = sources.test, sources.val
    labels = test.labels

    def votes(faces: TestFaces | None) -> np.ndarray | None:
        return None if ferplus_csv is None or faces is None else ferplus_labels(ferplus_csv, faces.ids, classes)

    store = RunStore(layout.ablation_runs)
    summaries: dict[str, dict] = {}
    runs: dict[str, list[ArmRun]] = {}
    val_answers: dict[str, list[np.ndarray]] = {}
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
            runs[name].append(trained_or_kept(store, data, test.ids, replace(recipe, seed=seed), evaluate,
                                              balance, classes, labels, params.retrain))
        if val is not None:
            val_answers[name] = _answers_on(val.ids, data.val.ids, [run.val_predicted for run in runs[name]])
        note(f"ablate {name}: {duration(sum(r.seconds for r in runs[name] if not r.reused))} of training")
    test_votes, val_votes = votes(test), votes(val)
    test_answers = {name: [run.predicted for run in arm_runs] for name, arm_runs in runs.items()}
    test_scores = _split_scores(test, test_answers, test_votes, classes, params)
    val_scores = None if val is None else _split_scores(val, val_answers, val_votes, classes, params)
    report_arms = {}
    for name in params.arms:
        report_arms[name] = {**summaries[name], **test_scores[name], "repeats": _repeats(runs[name], labels, classes)}
        if val_scores is not None:
            report_arms[name]["val"] = {"faces_answered": int((val_answers[name][0] >= 0).sum()), **val_scores[name]}
    every_run = [run for arm_runs in runs.values() for run in arm_runs]
    reused = sum(run.reused for run in every_run)
    report = {
        "classes": list(classes),
        "test": _faces_summary(test, "test", test_votes, classes, "every FER2013 PrivateTest row as ingested; a "
                                                                  "face an arm has no pixels for counts as wrong"),
        "val": None if val is None else _faces_summary(val, "val", val_votes, classes, "every FER2013 PublicTest "
                                                       "row as ingested, by the same rule: the faces to choose arms on"),
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
    _write_outputs(layout, {"test": (test.ids, labels, test_answers),
                            **({} if val is None else {"val": (val.ids, val.labels, val_answers)})},
                   params.seeds, report)
    return AblateResult(report, classes, metrics_path, layout.ablation_predictions, layout.ablation / FIGURE_FILE)


def _write_outputs(layout: Layout, splits: dict[str, tuple[list[str], np.ndarray, dict[str, list[np.ndarray]]]],
                   seeds: list[int], report: dict) -> None:
    """predictions.parquet (every arm's and seed's answer per face of each split in
    ``splits``: its ids, labels and answers by arm) and ablation.png, in a temporary folder
    renamed into place."""
    out_dir = layout.ablation
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        tables = []
        for split, (ids, labels, answers) in splits.items():
            for name, predicted in answers.items():
                for seed, answer in zip(seeds, predicted):
                    answered = answer >= 0
                    tables.append(pa.table({
                        "split": pa.array([split] * len(ids)), "arm": pa.array([name] * len(ids)),
                        "seed": pa.array([seed] * len(ids), pa.int64()), "sample_id": pa.array(ids),
                        "label_index": pa.array(labels, pa.int16()),
                        "predicted": pa.array(answer.astype(np.int16), pa.int16(), mask=~answered),
                        "correct": pa.array(answer == labels),
                    }))
        write_table(with_classes(pa.concat_tables(tables), report["classes"]), tmp / layout.ablation_predictions.name)
        figure = ablation_figure(report)
        figure.savefig(tmp / FIGURE_FILE, format="png", dpi=100, metadata={"Software": None})
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
