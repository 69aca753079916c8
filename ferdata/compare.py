"""Two models on the same faces: which is better, and how sure that is.

``ferdata compare A B`` reads two ``predictions.parquet`` files (the evaluate stage's, from
two pipelines or two params of one), or with ``--private-test`` two
``fer2013_private_test.parquet`` files (every FER2013 PrivateTest row as published, a face
without pixels counted wrong). With ``--arm-a`` / ``--arm-b`` a side is an ablation arm
instead (``ferdata ablate``'s answers on the same PrivateTest faces, or with ``--split val``
on FER2013's PublicTest faces), with every seed it ran paired seed by seed, or one seed.
It pairs the answers by sample id within one split and prints each model's accuracy,
macro recall and per-class recall with the difference A − B and its paired-bootstrap
interval (:mod:`ferdata.bootstrap`). Faces only one file holds, and faces whose labels
differ between the files (a corrected label, another ``ingest.labels``), are left out and
counted, never compared silently. On PrivateTest or an arm's faces,
``--without-train-copies`` also leaves out the faces either pipeline folder's split stage
found a copy of among the training rows (:func:`train_copies`), as ``ferdata ablate`` does
for its ``without_train_copies`` scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.table import Table

from ferdata import bootstrap
from ferdata.ablation_report import difference_text, share_text
from ferdata.dedup import copies_of_train_rows
from ferdata.layout import Layout
from ferdata.manifest import read_table
from ferdata.predictions import classes_of

COLUMNS = ("sample_id", "split", "label", "label_index", "predicted", "predicted_label", "correct", "probabilities")
ABLATION_COLUMNS = ("split", "arm", "seed", "sample_id", "label_index", "predicted", "correct")


@dataclass(frozen=True)
class Answers:
    """One model's answers on one split: an evaluate run's, or an ablation arm's, once per seed."""

    name: str  # the file, and for an ablation the arm and its seeds
    classes: tuple[str, ...]
    labels: dict[str, int]  # sample id -> true label index
    correct: dict[str, tuple[bool, ...]]  # sample id -> answered right, once per repeat (seed)
    predicted: dict[str, tuple[int | None, ...]]  # sample id -> the class answered (None: no answer), per repeat

    @property
    def repeats(self) -> int:
        return len(next(iter(self.correct.values())))


def predictions_path(path: Path, private_test: bool = False) -> Path:
    """``path`` itself when it is a file, else the pipeline folder's processed/predictions.parquet
    (with ``private_test``, its processed/fer2013_private_test.parquet)."""
    path = Path(path)
    if path.is_file():
        return path
    return Layout(path).private_test_predictions if private_test else Layout(path).predictions


def _class_names(table, path: Path) -> tuple[str, ...]:
    """Class names by index, from the labels and predictions the file holds."""
    n_classes = pc.max(pc.list_value_length(table["probabilities"])).as_py() or 0  # null: a face not answered
    names: dict[int, str] = {}
    for index_column, name_column in (("label_index", "label"), ("predicted", "predicted_label")):
        for index, name in set(zip(table[index_column].to_pylist(), table[name_column].to_pylist())):
            if index is not None and names.setdefault(index, name) != name:
                raise ValueError(f"{path}: class {index} is named both '{names[index]}' and '{name}'")
    return tuple(names.get(k, f"class {k}") for k in range(n_classes))


def _read(path: Path, columns: Sequence[str], what: str) -> pa.Table:
    """The table at ``path``, with a clear error naming it when it is missing or lacks a column."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predictions (run `ferdata {what}` in that pipeline first)")
    table = read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a predictions file of `ferdata {what}` (no column {', '.join(missing)}; "
                         f"one written by an earlier ferdata: run `ferdata {what}` again)")
    return table


def _answers(name: str, classes: tuple[str, ...], ids: list[str], labels: list[int],
             correct: list[tuple[bool, ...]], predicted: list[tuple[int | None, ...]]) -> Answers:
    """Answers by sample id; an error naming ``name`` when an id repeats."""
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}: a sample id appears more than once")
    return Answers(name=name, classes=classes, labels=dict(zip(ids, labels)), correct=dict(zip(ids, correct)),
                   predicted=dict(zip(ids, predicted)))


def read_answers(path: Path, split: str, private_test: bool = False) -> Answers:
    """The answers on ``split`` in the predictions file ``path`` (a pipeline folder: see
    :func:`predictions_path`); a clear error naming the file when it is missing, lacks a
    column, holds no row of ``split`` or repeats a sample."""
    path = predictions_path(path, private_test)
    table = _read(path, COLUMNS, "evaluate")
    classes = _class_names(table, path)  # from every split: a class one split lacks keeps its name
    table = table.filter(pc.equal(table["split"], split))
    if table.num_rows == 0:
        why = ("FER2013's PrivateTest was not ingested, or the dataset trains or validates on some of it"
               if private_test else "evaluate.splits names the splits it scores")
        raise ValueError(f"{path}: no predictions for split '{split}' ({why})")
    return _answers(f"{path} (split {split})", classes, table["sample_id"].to_pylist(),
                    table["label_index"].to_pylist(), [(c,) for c in table["correct"].to_pylist()],
                    [(k,) for k in table["predicted"].to_pylist()])


def read_arm(path: Path, arm: str, split: str = "test") -> Answers:
    """The answers of ablation arm ``arm`` (``name`` for every seed it ran, ``name@seed`` for
    one) on FER2013's PrivateTest faces as ingested (``split`` "val": its PublicTest faces),
    from ``ferdata ablate``'s predictions file ``path`` (a pipeline folder: its
    processed/ablation/predictions.parquet)."""
    path = Path(path)
    path = path if path.is_file() else Layout(path).ablation_predictions
    table = _read(path, ABLATION_COLUMNS, "ablate")
    classes = classes_of(table)
    if classes is None:
        raise ValueError(f"{path}: no class names in the file (written by an earlier ferdata; run `ferdata ablate` again)")
    table = table.filter(pc.equal(table["split"], split))
    if table.num_rows == 0:
        raise ValueError(f"{path}: no answers on split '{split}' (the ablation scores FER2013's PrivateTest as "
                         f"test and its PublicTest as val, when they were ingested)")
    name, _, seed_text = arm.partition("@")
    arms = sorted(set(table["arm"].to_pylist()))
    if name not in arms:
        raise ValueError(f"{path}: no arm '{name}' (it holds {', '.join(arms)})")
    table = table.filter(pc.equal(table["arm"], name))
    seeds = sorted(set(table["seed"].to_pylist()))
    if seed_text:
        if not seed_text.isdigit() or int(seed_text) not in seeds:
            raise ValueError(f"{path}: arm '{name}' has no seed '{seed_text}' (it ran seeds "
                             f"{', '.join(map(str, seeds))})")
        seeds = [int(seed_text)]
    by_seed = [table.filter(pc.equal(table["seed"], seed)).sort_by("sample_id") for seed in seeds]
    ids = by_seed[0]["sample_id"].to_pylist()
    if any(t["sample_id"].to_pylist() != ids for t in by_seed):
        raise ValueError(f"{path}: arm '{name}' answered different faces with different seeds")
    correct = list(zip(*(t["correct"].to_pylist() for t in by_seed)))
    predicted = list(zip(*(t["predicted"].to_pylist() for t in by_seed)))
    return _answers(f"{path} (arm {name}, seed {', '.join(map(str, seeds))}, split {split})", classes, ids,
                    by_seed[0]["label_index"].to_pylist(), correct, predicted)


def train_copies(folders: Sequence[Path]) -> set[str]:
    """The test faces that any of the pipeline ``folders``' split stage grouped with a
    training row (its processed/dataset/dedup.json); an error naming a folder without one."""
    copies: set[str] = set()
    for folder in dict.fromkeys(map(Path, folders)):  # a folder compared with itself is read once
        report = Layout(folder).dataset / "dedup.json"
        if not report.exists():
            raise FileNotFoundError(f"{report if folder.is_dir() else folder}: no dedup.json; "
                                    "--without-train-copies needs pipeline folders whose split stage has run")
        copies |= copies_of_train_rows(report)
    return copies


def compared_faces(a: Answers, b: Answers, leave_out: set[str] | None = None) -> list[str]:
    """The faces A and B both answered with the same label, less ``leave_out``."""
    return [sid for sid in a.labels if sid in b.labels and a.labels[sid] == b.labels[sid]
            and (leave_out is None or sid not in leave_out)]


def answered_shares(answers: Answers, faces: list[str]) -> dict[str, float]:
    """Each class's share of ``faces`` that ``answers`` gave that class (a face without an
    answer counts in none), averaged over the repeats: how often a model says each class."""
    predicted = np.array([[-1 if k is None else k for k in answers.predicted[sid]] for sid in faces]).T
    return {c: float((predicted == k).mean()) for k, c in enumerate(answers.classes)}


def compare(a: Answers, b: Answers, resamples: int = 2000, seed: int = 0,
            leave_out: set[str] | None = None, only: frozenset[str] | None = None) -> dict:
    """A against B on the faces both answered with the same label: both models' scores and
    A − B with its 95% paired-bootstrap interval, plus how many faces were left out and why.
    Answers with several repeats (an ablation arm's seeds) are paired repeat by repeat.
    ``leave_out`` (the test faces with a copy among the training rows) are left out too,
    and counted apart; with ``only``, just those faces are compared (one slice of them).
    ``answered`` gives each model's share of the faces answered as each class."""
    if a.classes != b.classes:
        raise ValueError(f"{a.name} and {b.name} use different classes: {', '.join(a.classes)} "
                         f"against {', '.join(b.classes)}")
    if a.repeats != b.repeats:
        raise ValueError(f"{a.name} has {a.repeats} answers per face and {b.name} {b.repeats}: "
                         f"pick one seed of an ablation arm, as ARM@SEED")
    shared = [sid for sid in a.labels if sid in b.labels]
    agreed = compared_faces(a, b)
    same = [sid for sid in compared_faces(a, b, leave_out) if only is None or sid in only]
    if not same:
        raise ValueError(f"{a.name} and {b.name} share no face with the same label: nothing to compare")
    classes = a.classes
    labels = np.array([a.labels[sid] for sid in same], np.int64)
    correct_a = np.array([a.correct[sid] for sid in same]).T  # (repeats, faces)
    correct_b = np.array([b.correct[sid] for sid in same]).T
    difference = bootstrap.paired_difference(labels, list(correct_a), list(correct_b), len(classes), resamples, seed)
    difference["recall"] = dict(zip(classes, difference["recall"]))
    return {
        "a": a.name, "b": b.name, "faces": len(same), "repeats": a.repeats, "classes": list(classes),
        "support": {c: int((labels == k).sum()) for k, c in enumerate(classes)},
        "left_out": {"only_in_a": len(a.labels) - len(shared), "only_in_b": len(b.labels) - len(shared),
                     "label_differs": len(shared) - len(agreed)},
        "train_copies_left_out": None if leave_out is None else len(agreed) - len(same),
        "scores": {"a": bootstrap.observed_scores(labels, correct_a, classes),
                   "b": bootstrap.observed_scores(labels, correct_b, classes)},
        "answered": {"a": answered_shares(a, same), "b": answered_shares(b, same)},
        "difference": difference,
    }


def comparison_table(report: dict, split: str, where: str | None = None) -> Table:
    """Accuracy, macro recall and per-class recall of A and B, and A − B with its interval,
    captioned with the faces left out; for a slice of the faces, ``where`` names it and the
    caption (the whole comparison's) is left off. :func:`sides_text` names A and B."""
    level = f"{report['difference']['confidence']:.0%}"
    seeds = f"; means over {report['repeats']} seeds, paired seed by seed" if report["repeats"] > 1 else ""
    faces = f"{report['faces']:,} {split} faces" + ("" if where is None else f" with {where}")
    table = Table(caption_justify="left",
                  title=f"compare: {faces}; A − B in points "
                        f"[{level} paired-bootstrap interval, {report['difference']['resamples']:,} resamples]{seeds}")
    for col in ("score", "support", "A", "B", "A − B"):
        table.add_column(col, justify="left" if col == "score" else "right")
    a, b, diff = report["scores"]["a"], report["scores"]["b"], report["difference"]
    for name, key in (("accuracy", "accuracy"), ("macro recall", "macro_recall")):
        table.add_row(name, f"{report['faces']:,}", share_text(a[key]), share_text(b[key]), difference_text(diff[key]),
                      end_section=key == "macro_recall")
    for c in report["classes"]:
        table.add_row(f"recall {c}", f"{report['support'][c]:,}", share_text(a["recall"][c]),
                      share_text(b["recall"][c]), difference_text(diff["recall"][c]))
    if where is not None:
        return table
    left = report["left_out"]
    copies = report["train_copies_left_out"]
    table.caption = (f"left out: {left['only_in_a']:,} faces only in A, "
                     f"{left['only_in_b']:,} only in B, {left['label_differs']:,} labelled differently"
                     + ("" if copies is None else f", {copies:,} with a copy among the training rows"))
    return table


def sides_text(report: dict) -> str:
    """``A: <path>`` and ``B: <path>`` on two lines, for printing unwrapped: a path folded to
    a table's width could not be copied."""
    return f"A: {report['a']}\nB: {report['b']}"


def class_mix_table(report: dict, train_share: dict[str, float] | None = None, train_rows: int = 0) -> Table:
    """Each class's share of the compared faces beside the share A and B answer it (a recall
    bought by answering a class more often than it occurs shows here); for a slice of the
    faces, ``train_share`` gives each class's share of its ``train_rows`` training rows."""
    table = Table(title="how often each class occurs and is answered", caption_justify="left")
    columns = ("class", "share", "A answers", "B answers") + (() if train_share is None else ("train share",))
    for col in columns:
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in report["classes"]:
        table.add_row(c, share_text(report["support"][c] / report["faces"]), share_text(report["answered"]["a"][c]),
                      share_text(report["answered"]["b"][c]),
                      *(() if train_share is None else (share_text(train_share.get(c)),)))
    if train_share is not None:
        table.caption = f"train share: the class's share of the {train_rows:,} ingested training rows in this bin"
    return table
