"""The label-issues stage: rank every training sample by how likely its label is wrong.

Out-of-fold probabilities (:mod:`ferdata.oof_model`: a CNN per fold, or HOG / PCA features
with logistic regression) give every sample a cleanlab label-quality score; all samples are
ranked by it, lowest first. The stage flags the top of the ranking within the review
budget, and no more than cleanlab's confident learning estimates to be wrong; with a class
cap, a face whose class already has its share flagged is passed over for the next one.
Writes into ``processed/label_issues/``:

* ``label_issues.parquet``: every training sample in rank order, with its flag;
* ``label_issues.json``: counts per class, and, when FER+ votes are known, the ranking's
  precision against the FER+ majority at the budget and at fixed ranks
  (:mod:`ferdata.issue_precision`); on generated data, also against the wrong labels
  ``sample_truth.json`` says were planted;
* ``excluded_ids.txt``: with ``exclude_from_train: true``, the flagged ids that the balance
  stage leaves out (read them with :func:`excluded_ids`).

and ``metrics/label_issues.json``: the counts and the precision tables, a DVC metric.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cleanlab.count import num_label_issues
from cleanlab.rank import get_label_quality_scores
from rich.table import Table

from ferdata import oof_model
from ferdata.files import replace_dir, write_json, write_json_atomic
from ferdata.issue_precision import (PlantedTruth, ferplus_reference, planted_precision, precision_at_ranks,
                                     read_planted)
from ferdata.manifest import pixels_to_array, read_table, write_table
from ferdata.params import ParamsError
from ferdata.progress import progress_bar
from ferdata.taxonomy import CLASSES_8

MANIFEST = "manifest.parquet"
ISSUES_FILE = "label_issues.parquet"
REPORT_FILE = "label_issues.json"
EXCLUDED_FILE = "excluded_ids.txt"
#: cleanlab label-quality scores the ranking can use (lowest score = most likely wrong).
RANKINGS: tuple[str, ...] = ("normalized_margin", "self_confidence")

LABEL_ISSUES_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),  # the label the dataset gives
    pa.field("label_index", pa.int16(), nullable=False),
    pa.field("suggested_label", pa.string(), nullable=False),  # argmax of the out-of-fold probabilities
    pa.field("suggested_label_index", pa.int16(), nullable=False),
    pa.field("self_confidence", pa.float32(), nullable=False),  # out-of-fold probability of ``label``
    pa.field("label_quality", pa.float32(), nullable=False),  # the ranking's score; lowest = most doubtful
    pa.field("rank", pa.int32(), nullable=False),  # 1 = most likely wrong
    pa.field("is_label_issue", pa.bool_(), nullable=False),  # flagged: top of the ranking, within budget and cap
    pa.field("ferplus_voted", pa.bool_(), nullable=False),  # FER+ annotators voted on this face
    pa.field("ferplus_majority", pa.string()),  # FER+ majority class, when there is one
])


@dataclass
class LabelIssuesParams:
    """The ``label_issues:`` section of params.yaml."""

    features: str = "cnn"  # cnn | hog | pca
    folds: int = 3
    epochs: int = 6  # features: cnn
    batch_size: int = 128  # features: cnn
    pca_components: int = 100  # features: pca
    c: float = 0.003  # features: hog, pca; inverse regularisation of the logistic regression
    max_iter: int = 300  # features: hog, pca
    ranking: str = "normalized_margin"  # normalized_margin | self_confidence
    budget: float | int = 0.05  # share of train (0 < share <= 1) or count of faces (integer >= 1) to flag
    max_class_share: float | None = None  # most of one class's train faces flagged (0 < share <= 1); None: no cap
    exclude_from_train: bool = False  # write excluded_ids.txt for the balance stage
    seed: int = 42

    def check(self) -> None:
        """Raise ParamsError naming the first bad value."""
        problems = {
            "folds": self.folds < 2 and "at least 2",
            "features": self.features not in oof_model.FEATURES and f"one of {', '.join(oof_model.FEATURES)}",
            "epochs": self.epochs < 1 and "at least 1",
            "batch_size": self.batch_size < 1 and "at least 1",
            "pca_components": self.pca_components < 1 and "at least 1",
            "c": self.c <= 0 and "greater than 0",
            "max_iter": self.max_iter < 1 and "at least 1",
            "ranking": self.ranking not in RANKINGS and f"one of {', '.join(RANKINGS)}",
            "budget": not _valid_budget(self.budget) and "a share of train (0 < share <= 1, e.g. 0.05) "
                                                       "or a count of faces (an integer >= 1)",
            "max_class_share": not _valid_cap(self.max_class_share) and "a share of a class (0 < share <= 1, "
                                                                        "e.g. 0.05), or null for no cap",
        }
        for key, expected in problems.items():
            if expected:
                raise ParamsError(f"params.yaml [label_issues].{key}: {getattr(self, key)!r}; expected {expected}")

    def budget_faces(self, samples: int) -> int:
        """The budget as a number of faces, out of ``samples``."""
        if isinstance(self.budget, float):
            return max(1, round(self.budget * samples))
        return min(self.budget, samples)

    def budget_label(self) -> str:
        """The budget as params.yaml gives it: ``budget 5%``, ``budget 500 faces``, with
        ``, at most 5% of a class`` under a class cap."""
        label = f"budget {self.budget * 100:.4g}%" if isinstance(self.budget, float) else f"budget {self.budget} faces"
        if self.max_class_share is not None:
            label += f", at most {self.max_class_share * 100:.4g}% of a class"
        return label


def _valid_budget(budget: object) -> bool:
    if isinstance(budget, bool):
        return False
    if isinstance(budget, float):
        return 0 < budget <= 1
    return isinstance(budget, int) and budget >= 1


def _valid_cap(share: object) -> bool:
    return share is None or (isinstance(share, (int, float)) and not isinstance(share, bool) and 0 < share <= 1)


def choose_flagged(ranked_labels: np.ndarray, count: int, max_class_share: float | None) -> np.ndarray:
    """Which faces of a ranking (labels in rank order, most doubtful first) to flag: the
    first ``count``, except that a face whose class already has ``max_class_share`` of its
    faces flagged is passed over for the next one. Fewer than ``count`` when every class is
    at its cap."""
    flags = np.zeros(len(ranked_labels), dtype=bool)
    if max_class_share is None:
        flags[:count] = True
        return flags
    classes, sizes = np.unique(ranked_labels, return_counts=True)
    # + 1e-9: a share times a size that is a whole number in decimals (0.29 * 100) is not always one in floats
    room = dict(zip(classes.tolist(), np.floor(max_class_share * sizes + 1e-9).astype(int).tolist()))
    for i, label in enumerate(ranked_labels.tolist()):
        if count == 0:
            break
        if room[label] > 0:
            flags[i] = True
            room[label] -= 1
            count -= 1
    return flags


@dataclass
class LabelIssuesResult:
    """The stage's outcome, for the summary tables."""

    out_dir: Path
    samples: int
    flagged: int
    estimated_issues: int  # how many labels cleanlab's confident learning counts as wrong
    budget: str  # e.g. "budget 5%"
    oof_accuracy: float  # out-of-fold argmax == given label
    classes: dict[str, dict[str, int]]  # class -> samples, flagged
    ferplus: dict | None
    planted: dict | None  # precision against the wrong labels a generated sample planted
    excluded: int


def run_label_issues(params: LabelIssuesParams, dataset_dir: Path, out_dir: Path,
                     ferplus_csv: Path | None = None, metrics_path: Path | None = None,
                     truth_json: Path | None = None) -> LabelIssuesResult:
    """Rank ``dataset_dir/manifest.parquet``'s train split by label doubt; flag the top.

    ``ferplus_csv`` (fer2013new.csv) adds the precision against FER+ majority labels;
    without it, a ``soft_label`` column in the manifest serves when it holds FER+ vote
    shares. ``truth_json`` (a generated sample's ``sample_truth.json``) adds the precision
    against the wrong labels it planted. ``metrics_path`` also receives the report's
    figures, for DVC.
    """
    params.check()
    path = Path(dataset_dir) / MANIFEST
    train = _train_rows(read_table(path), path)
    labels = np.array(train["label_index"].to_pylist(), dtype=np.int64)
    present = np.unique(labels)
    if len(present) < 2 or len(labels) < params.folds:
        raise ValueError(f"{path}: the train split has {len(labels)} real samples in {len(present)} "
                         f"class(es); finding label issues needs 2 classes and at least {params.folds} samples")
    dense = np.searchsorted(present, labels)  # class indices 0..k-1 over the classes present
    reference = ferplus_reference(train, ferplus_csv)  # before the long part: a bad votes file fails fast
    planted = read_planted(truth_json) if truth_json is not None else None
    probs, not_converged = _out_of_fold(pixels_to_array(train["pixels"]), dense, len(present), params)
    quality = get_label_quality_scores(dense, probs, method=params.ranking)
    estimated = int(num_label_issues(dense, probs))
    flagged = min(params.budget_faces(len(labels)), estimated)
    issues = _issues_table(train, present, dense, probs, quality, flagged, params.max_class_share, reference)
    report = _report(params, issues, estimated, not_converged, ferplus_csv, planted)
    _write(Path(out_dir), issues, report, params.exclude_from_train)
    if metrics_path is not None:
        write_json_atomic(Path(metrics_path), _metrics(report))
    return LabelIssuesResult(
        out_dir=Path(out_dir), samples=len(labels), flagged=report["flagged"], estimated_issues=estimated,
        budget=params.budget_label(), oof_accuracy=report["oof_accuracy"], classes=report["classes"],
        ferplus=report["ferplus"], planted=report["planted"], excluded=report["excluded"])


def _out_of_fold(images: np.ndarray, labels: np.ndarray, n_classes: int,
                 params: LabelIssuesParams) -> tuple[np.ndarray, int]:
    """Features of every image, then out-of-fold probabilities, with progress bars."""
    with progress_bar(f"label issues: {params.features} features", len(images)) as advance:
        features = oof_model.feature_matrix(images, params.features, advance)

    folds_made = itertools.count(1)

    def make_model():
        fold = next(folds_made)
        return oof_model.classifier(params.features, c=params.c, max_iter=params.max_iter,
                                    pca_components=params.pca_components, epochs=params.epochs,
                                    batch_size=params.batch_size, seed=params.seed,
                                    label=f"label issues fold {fold}/{params.folds}",
                                    later_epochs=(params.folds - fold) * params.epochs)

    with progress_bar(f"label issues: out-of-fold {params.features} models", params.folds) as advance:
        return oof_model.out_of_fold_probabilities(features, labels, n_classes, params.folds, make_model,
                                                   params.seed, advance)


def _issues_table(train: pa.Table, present: np.ndarray, dense: np.ndarray, probs: np.ndarray,
                  quality: np.ndarray, flagged: int, max_class_share: float | None,
                  reference: tuple[list[bool], list[str | None]]) -> pa.Table:
    """One row per training sample in rank order: lowest label quality first, ties by id;
    the top ``flagged`` flagged (passing over faces of classes at ``max_class_share``)."""
    names = dict(zip(train["label_index"].to_pylist(), train["label"].to_pylist()))
    suggested = present[probs.argmax(axis=1)]
    ids = train["sample_id"].to_pylist()
    order = sorted(range(len(dense)), key=lambda i: (quality[i], ids[i]))
    rank = np.empty(len(dense), dtype=np.int64)
    rank[order] = np.arange(1, len(dense) + 1)
    is_issue = np.zeros(len(dense), dtype=bool)
    is_issue[order] = choose_flagged(dense[order], flagged, max_class_share)
    voted, majority = reference
    issues = pa.Table.from_pydict({
        "sample_id": ids,
        "source": train["source"].to_pylist(),
        "label": train["label"].to_pylist(),
        "label_index": present[dense],
        "suggested_label": [names[k] for k in suggested.tolist()],
        "suggested_label_index": suggested,
        "self_confidence": probs[np.arange(len(dense)), dense],
        "label_quality": quality,
        "rank": rank,
        "is_label_issue": is_issue,
        "ferplus_voted": voted,
        "ferplus_majority": majority,
    }, schema=LABEL_ISSUES_SCHEMA)
    return issues.take(pa.array(order, pa.int64()))


def _train_rows(table: pa.Table, path: Path) -> pa.Table:
    """The real samples of the train split, in sample-id order."""
    missing = [c for c in ("sample_id", "source", "label", "label_index", "split", "pixels")
               if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: lacks the column(s) {', '.join(missing)}; expected a dataset manifest")
    keep = pc.fill_null(pc.equal(table["split"], "train"), False)
    if "origin" in table.column_names:
        keep = pc.and_(keep, pc.fill_null(pc.equal(table["origin"], "real"), False))
    return table.filter(keep).sort_by("sample_id")


def _report(params: LabelIssuesParams, issues: pa.Table, estimated: int, not_converged: int,
            ferplus_csv: Path | None, planted: PlantedTruth | None) -> dict:
    labels = issues["label"].to_pylist()
    flags = issues["is_label_issue"].to_pylist()
    suggested = issues["suggested_label"].to_pylist()
    classes: dict[str, dict[str, int]] = {}
    for label, flag in zip(labels, flags):
        entry = classes.setdefault(label, {"samples": 0, "flagged": 0})
        entry["samples"] += 1
        entry["flagged"] += flag
    order = {name: i for i, name in enumerate(CLASSES_8)}
    classes = dict(sorted(classes.items(), key=lambda kv: order[kv[0]]))
    precision = precision_at_ranks(issues)
    if precision is not None:
        precision = {"reference": "fer2013new.csv majority" if ferplus_csv is not None
                     else "soft_label share above 0.5", **precision}
    flagged = sum(flags)
    return {
        "params": asdict(params),
        "samples": len(labels),
        "budget_faces": params.budget_faces(len(labels)),
        "estimated_issues": estimated,
        "flagged": flagged,
        "flagged_share": round(flagged / len(labels), 6),
        "oof_accuracy": round(float(np.mean([a == b for a, b in zip(labels, suggested)])), 6),
        "not_converged_folds": not_converged,
        "classes": classes,
        "flagged_as": _flagged_as(labels, suggested, flags),
        "ferplus": precision,
        "planted": planted_precision(issues, planted) if planted is not None else None,
        "excluded": flagged if params.exclude_from_train else 0,
    }


def _metrics(report: dict) -> dict:
    """The report's figures for ``dvc metrics``: counts, accuracy and the precision tables."""
    keys = ("samples", "budget_faces", "estimated_issues", "flagged", "flagged_share", "oof_accuracy")
    found = {key: report[key] for key in keys}
    for reference in ("ferplus", "planted"):
        if report[reference] is not None:
            table = report[reference]
            found[reference] = {"base_rate": table["base_rate"], "recall_at_budget": table["recall_at_budget"],
                                **{key: {"precision": row["precision"], "lift": row["lift"]}
                                   for key, row in table["at_rank"].items()}}
    return found


def _flagged_as(labels: list[str], suggested: list[str], flags: list[bool]) -> dict[str, int]:
    """Flagged samples by 'given -> suggested' class pair, most frequent first."""
    pairs: dict[str, int] = {}
    for label, guess, flag in zip(labels, suggested, flags):
        if flag:
            key = f"{label} -> {guess}"
            pairs[key] = pairs.get(key, 0) + 1
    return dict(sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])))


def _write(out_dir: Path, issues: pa.Table, report: dict, exclude: bool) -> None:
    """Assemble the output folder in a temporary folder and rename it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        write_table(issues, tmp / ISSUES_FILE)
        write_json(tmp / REPORT_FILE, report)
        if exclude:
            flagged = issues.filter(issues["is_label_issue"])["sample_id"].to_pylist()
            (tmp / EXCLUDED_FILE).write_text("".join(f"{sid}\n" for sid in sorted(flagged)))
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def excluded_ids(label_issues_dir: Path) -> set[str]:
    """The sample ids the balance stage must leave out of training (empty unless the stage
    ran with ``exclude_from_train: true``); FileNotFoundError if the stage never ran."""
    label_issues_dir = Path(label_issues_dir)
    if not (label_issues_dir / REPORT_FILE).is_file():
        raise FileNotFoundError(f"{label_issues_dir / REPORT_FILE}: not found; run the label-issues stage first")
    path = label_issues_dir / EXCLUDED_FILE
    return set(path.read_text().split()) if path.is_file() else set()


def flagged_ids(label_issues_dir: Path) -> set[str]:
    """The ids the label-issues stage flagged, whether or not it excluded them from training."""
    path = Path(label_issues_dir) / ISSUES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the label-issues stage first")
    issues = read_table(path)
    return set(issues.filter(issues["is_label_issue"])["sample_id"].to_pylist())


def label_issues_table(result: LabelIssuesResult) -> Table:
    """Per class: training samples, flagged and share; the budget and estimate in the caption."""
    table = Table(title=f"label issues: {result.flagged} of {result.samples} training samples flagged "
                        f"({result.budget}; out-of-fold accuracy {result.oof_accuracy:.1%})")
    for col in ("class", "samples", "flagged", "share"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, counts in result.classes.items():
        share = counts["flagged"] / counts["samples"] if counts["samples"] else 0.0
        table.add_row(name, str(counts["samples"]), str(counts["flagged"]), f"{share:.1%}")
    captions = [f"confident learning counts {result.estimated_issues} labels as wrong; the flagged are the "
                f"top of the ranking within the budget"]
    if result.excluded:
        captions.append(f"{result.excluded} flagged samples excluded from training ({EXCLUDED_FILE})")
    table.caption = "\n".join(captions)
    return table
