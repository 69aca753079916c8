"""Two evaluate runs on the same faces: which model is better, and how sure that is.

``ferdata compare A B`` reads two ``predictions.parquet`` files (the evaluate stage's, from
two pipelines or two params of one), or with ``--private-test`` two
``fer2013_private_test.parquet`` files (every FER2013 PrivateTest row as published, a face
without pixels counted wrong), pairs their answers by sample id within one split and
prints each model's accuracy, macro recall and per-class recall with the difference A − B
and its paired-bootstrap interval (:mod:`ferdata.bootstrap`). Faces only one file holds,
and faces whose labels differ between the files (a corrected label, another
``ingest.labels``), are left out and counted, never compared silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from rich.table import Table

from ferdata import bootstrap
from ferdata.ablation_report import difference_text, share_text
from ferdata.layout import Layout
from ferdata.manifest import read_table

COLUMNS = ("sample_id", "split", "label", "label_index", "predicted", "predicted_label", "correct", "probabilities")


@dataclass(frozen=True)
class Answers:
    """One model's answers on one split, as predictions.parquet holds them."""

    path: Path
    classes: tuple[str, ...]
    labels: dict[str, int]  # sample id -> true label index
    correct: dict[str, bool]  # sample id -> answered right


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


def read_answers(path: Path, split: str, private_test: bool = False) -> Answers:
    """The answers on ``split`` in the predictions file ``path`` (a pipeline folder: see
    :func:`predictions_path`); a clear error naming the file when it is missing, lacks a
    column, holds no row of ``split`` or repeats a sample."""
    path = predictions_path(path, private_test)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predictions (run `ferdata evaluate` in that pipeline first)")
    table = read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not an evaluate predictions file (no column {', '.join(missing)})")
    classes = _class_names(table, path)  # from every split: a class one split lacks keeps its name
    table = table.filter(pc.equal(table["split"], split))
    if table.num_rows == 0:
        why = ("FER2013's PrivateTest was not ingested, or the dataset trains or validates on some of it"
               if private_test else "evaluate.splits names the splits it scores")
        raise ValueError(f"{path}: no predictions for split '{split}' ({why})")
    ids = table["sample_id"].to_pylist()
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: a sample id appears more than once in split '{split}'")
    return Answers(path=path, classes=classes,
                   labels=dict(zip(ids, table["label_index"].to_pylist())),
                   correct=dict(zip(ids, table["correct"].to_pylist())))


def compare(a: Answers, b: Answers, resamples: int = 2000, seed: int = 0) -> dict:
    """A against B on the faces both answered with the same label: both models' scores and
    A − B with its 95% paired-bootstrap interval, plus how many faces were left out and why."""
    if a.classes != b.classes:
        raise ValueError(f"{a.path} and {b.path} use different classes: {', '.join(a.classes)} "
                         f"against {', '.join(b.classes)}")
    shared = [sid for sid in a.labels if sid in b.labels]
    same = [sid for sid in shared if a.labels[sid] == b.labels[sid]]
    if not same:
        raise ValueError(f"{a.path} and {b.path} share no face with the same label: nothing to compare")
    classes = a.classes
    labels = np.array([a.labels[sid] for sid in same], np.int64)
    correct_a = np.array([a.correct[sid] for sid in same])
    correct_b = np.array([b.correct[sid] for sid in same])
    difference = bootstrap.paired_difference(labels, [correct_a], [correct_b], len(classes), resamples, seed)
    difference["recall"] = dict(zip(classes, difference["recall"]))
    return {
        "a": str(a.path), "b": str(b.path), "faces": len(same), "classes": list(classes),
        "support": {c: int((labels == k).sum()) for k, c in enumerate(classes)},
        "left_out": {"only_in_a": len(a.labels) - len(shared), "only_in_b": len(b.labels) - len(shared),
                     "label_differs": len(shared) - len(same)},
        "scores": {"a": bootstrap.observed_scores(labels, correct_a, classes),
                   "b": bootstrap.observed_scores(labels, correct_b, classes)},
        "difference": difference,
    }


def comparison_table(report: dict, split: str) -> Table:
    """Accuracy, macro recall and per-class recall of A and B, and A − B with its interval."""
    level = f"{report['difference']['confidence']:.0%}"
    table = Table(caption_justify="left",
                  title=f"compare: {report['faces']:,} {split} faces; A − B in points "
                        f"[{level} paired-bootstrap interval, {report['difference']['resamples']:,} resamples]")
    for col in ("score", "support", "A", "B", "A − B"):
        table.add_column(col, justify="left" if col == "score" else "right")
    a, b, diff = report["scores"]["a"], report["scores"]["b"], report["difference"]
    for name, key in (("accuracy", "accuracy"), ("macro recall", "macro_recall")):
        table.add_row(name, f"{report['faces']:,}", share_text(a[key]), share_text(b[key]), difference_text(diff[key]),
                      end_section=key == "macro_recall")
    for c in report["classes"]:
        table.add_row(f"recall {c}", f"{report['support'][c]:,}", share_text(a["recall"][c]),
                      share_text(b["recall"][c]), difference_text(diff["recall"][c]))
    left = report["left_out"]
    table.caption = (f"A: {report['a']}\nB: {report['b']}\nleft out: {left['only_in_a']:,} faces only in A, "
                     f"{left['only_in_b']:,} only in B, {left['label_differs']:,} labelled differently")
    return table
