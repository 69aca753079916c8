"""The label-issues stage: confident learning flags training samples whose label looks wrong.

Out-of-fold probabilities from a fast model (:mod:`ferdata.oof_model`) go to cleanlab's
``find_label_issues``, which flags the samples whose given label the model confidently
contradicts and ranks them by self-confidence (the probability of the given label; lowest
first). Writes into ``processed/label_issues/``:

* ``label_issues.parquet``: every training sample, flagged ones first in rank order;
* ``label_issues.json``: counts per class, and, when FER+ votes are known, how often
  flagged and unflagged FER2013 samples disagree with the FER+ majority;
* ``excluded_ids.txt``: with ``exclude_from_train: true``, the flagged ids that the balance
  stage leaves out (read them with :func:`excluded_ids`).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cleanlab.filter import find_label_issues
from rich.table import Table

from ferdata import oof_model
from ferdata.export import replace_dir, write_json
from ferdata.ferplus import fer2013_row, majority_labels, read_ferplus
from ferdata.manifest import pixels_to_array, read_table, write_table
from ferdata.params import ParamsError
from ferdata.progress import progress_bar
from ferdata.taxonomy import CLASSES_8, Taxonomy

MANIFEST = "manifest.parquet"
ISSUES_FILE = "label_issues.parquet"
REPORT_FILE = "label_issues.json"
EXCLUDED_FILE = "excluded_ids.txt"

LABEL_ISSUES_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("label", pa.string(), nullable=False),  # the label the dataset gives
    pa.field("label_index", pa.int16(), nullable=False),
    pa.field("suggested_label", pa.string(), nullable=False),  # argmax of the out-of-fold probabilities
    pa.field("suggested_label_index", pa.int16(), nullable=False),
    pa.field("self_confidence", pa.float32(), nullable=False),  # out-of-fold probability of ``label``
    pa.field("is_label_issue", pa.bool_(), nullable=False),
    pa.field("rank", pa.int32()),  # 1 = most likely wrong; null when not flagged
    pa.field("ferplus_majority", pa.string()),  # FER+ majority class, when known
])


@dataclass
class LabelIssuesParams:
    """The ``label_issues:`` section of params.yaml."""

    folds: int = 5
    features: str = "hog"  # hog | pca
    pca_components: int = 100  # features: pca only
    c: float = 0.003  # inverse regularisation strength of the logistic regression
    max_iter: int = 300
    exclude_from_train: bool = False  # write excluded_ids.txt for the balance stage
    seed: int = 42

    def check(self) -> None:
        """Raise ParamsError naming the first bad value."""
        problems = {
            "folds": self.folds < 2 and "at least 2",
            "features": self.features not in oof_model.FEATURES and f"one of {', '.join(oof_model.FEATURES)}",
            "pca_components": self.pca_components < 1 and "at least 1",
            "c": self.c <= 0 and "greater than 0",
            "max_iter": self.max_iter < 1 and "at least 1",
        }
        for key, expected in problems.items():
            if expected:
                raise ParamsError(f"params.yaml [label_issues].{key}: {getattr(self, key)!r}; expected {expected}")


@dataclass
class LabelIssuesResult:
    """The stage's outcome, for the summary table."""

    out_dir: Path
    samples: int
    flagged: int
    oof_accuracy: float  # out-of-fold argmax == given label
    classes: dict[str, dict[str, int]]  # class -> samples, flagged
    ferplus: dict | None
    excluded: int


def run_label_issues(params: LabelIssuesParams, dataset_dir: Path, out_dir: Path,
                     ferplus_csv: Path | None = None) -> LabelIssuesResult:
    """Flag likely label errors in ``dataset_dir/manifest.parquet``'s train split.

    ``ferplus_csv`` (fer2013new.csv) adds the comparison with FER+ majority labels; without
    it, a ``soft_label`` column in the manifest serves when it holds FER+ vote shares.
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
    probs, not_converged = _out_of_fold(pixels_to_array(train["pixels"]), dense, len(present), params)
    ranked = find_label_issues(dense, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    issues = _issues_table(train, present, dense, probs, ranked, _ferplus_majority(train, ferplus_csv))
    report = _report(params, issues, not_converged, ferplus_csv)
    _write(Path(out_dir), issues, report, params.exclude_from_train)
    return LabelIssuesResult(
        out_dir=Path(out_dir), samples=len(labels), flagged=len(ranked),
        oof_accuracy=report["oof_accuracy"], classes=report["classes"], ferplus=report["ferplus"],
        excluded=report["excluded"])


def _out_of_fold(images: np.ndarray, labels: np.ndarray, n_classes: int,
                 params: LabelIssuesParams) -> tuple[np.ndarray, int]:
    """Features of every image, then out-of-fold probabilities, with progress bars."""
    with progress_bar(f"label issues: {params.features} features", len(images)) as advance:
        features = oof_model.feature_matrix(images, params.features, advance)

    def make_model():
        return oof_model.classifier(params.features, c=params.c, max_iter=params.max_iter,
                                    pca_components=params.pca_components, seed=params.seed)

    with progress_bar("label issues: out-of-fold models", params.folds) as advance:
        return oof_model.out_of_fold_probabilities(features, labels, n_classes, params.folds, make_model,
                                                   params.seed, advance)


def _issues_table(train: pa.Table, present: np.ndarray, dense: np.ndarray, probs: np.ndarray,
                  ranked: np.ndarray, ferplus_majority: list[str | None]) -> pa.Table:
    """One row per training sample: flagged ones first in rank order, then by self-confidence."""
    names = dict(zip(train["label_index"].to_pylist(), train["label"].to_pylist()))
    suggested = present[probs.argmax(axis=1)]
    confidence = probs[np.arange(len(dense)), dense]
    rank = np.zeros(len(dense), dtype=np.int64)
    rank[ranked] = np.arange(1, len(ranked) + 1)
    ids = train["sample_id"].to_pylist()
    issues = pa.Table.from_pydict({
        "sample_id": ids,
        "source": train["source"].to_pylist(),
        "label": train["label"].to_pylist(),
        "label_index": present[dense],
        "suggested_label": [names[k] for k in suggested.tolist()],
        "suggested_label_index": suggested,
        "self_confidence": confidence,
        "is_label_issue": rank > 0,
        "rank": [int(r) if r else None for r in rank],
        "ferplus_majority": ferplus_majority,
    }, schema=LABEL_ISSUES_SCHEMA)
    order = sorted(range(len(dense)), key=lambda i: (rank[i] == 0, rank[i], confidence[i], ids[i]))
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


def _ferplus_majority(train: pa.Table, ferplus_csv: Path | None) -> list[str | None]:
    """Each train sample's FER+ majority class: from fer2013new.csv, else from ``soft_label``."""
    if ferplus_csv is not None:
        majority = majority_labels(read_ferplus(ferplus_csv))
        rows = [fer2013_row(sid) if source == "fer2013" else None
                for sid, source in zip(train["sample_id"].to_pylist(), train["source"].to_pylist())]
        return [majority[r] if r is not None and r < len(majority) else None for r in rows]
    if "soft_label" not in train.column_names:
        return [None] * train.num_rows
    found = []
    for source, soft in zip(train["source"].to_pylist(), train["soft_label"].to_pylist()):
        top = int(np.argmax(soft)) if source == "fer2013" and soft else -1
        found.append(Taxonomy.of_size(len(soft)).classes[top] if top >= 0 and soft[top] > 0.5 else None)
    return found


def ferplus_comparison(issues: pa.Table) -> dict | None:
    """How often flagged and unflagged samples' labels differ from the FER+ majority.

    Counts only samples with a FER+ majority; None when there is none. ``precision`` is the
    disagreement rate among flagged samples, ``recall`` the share of disagreeing samples
    flagged, ``base_rate`` the disagreement rate overall (what random flagging would reach).
    """
    rows = [(flag, label != majority) for flag, label, majority in zip(
        issues["is_label_issue"].to_pylist(), issues["label"].to_pylist(), issues["ferplus_majority"].to_pylist())
        if majority is not None]
    if not rows:
        return None
    flags, disagree = (np.array(v, dtype=bool) for v in zip(*rows))

    def group(mask: np.ndarray) -> dict:
        n, d = int(mask.sum()), int((disagree & mask).sum())
        return {"samples": n, "disagree": d, "disagree_rate": round(d / n, 6) if n else None}

    total = int(disagree.sum())
    base = total / len(rows)
    precision = float(disagree[flags].mean()) if flags.any() else None
    return {
        "samples_with_majority": len(rows),
        "flagged": group(flags), "unflagged": group(~flags),
        "base_rate": round(base, 6),
        "precision": None if precision is None else round(precision, 6),
        "recall": round(int((disagree & flags).sum()) / total, 6) if total else None,
        "lift": round(precision / base, 4) if precision is not None and base else None,
    }


def _report(params: LabelIssuesParams, issues: pa.Table, not_converged: int, ferplus_csv: Path | None) -> dict:
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
    comparison = ferplus_comparison(issues)
    if comparison is not None:
        comparison["reference"] = ("fer2013new.csv majority" if ferplus_csv is not None
                                   else "soft_label share above 0.5")
    flagged = sum(flags)
    return {
        "params": asdict(params),
        "samples": len(labels),
        "flagged": flagged,
        "flagged_share": round(flagged / len(labels), 6),
        "oof_accuracy": round(float(np.mean([a == b for a, b in zip(labels, suggested)])), 6),
        "not_converged_folds": not_converged,
        "classes": classes,
        "flagged_as": _flagged_as(labels, suggested, flags),
        "ferplus": comparison,
        "excluded": flagged if params.exclude_from_train else 0,
    }


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


def label_issues_table(result: LabelIssuesResult) -> Table:
    """Per class: training samples, flagged and share; FER+ agreement in the caption."""
    table = Table(title=f"label issues: {result.flagged} of {result.samples} training samples flagged "
                        f"(out-of-fold accuracy {result.oof_accuracy:.1%})")
    for col in ("class", "samples", "flagged", "share"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, counts in result.classes.items():
        share = counts["flagged"] / counts["samples"] if counts["samples"] else 0.0
        table.add_row(name, str(counts["samples"]), str(counts["flagged"]), f"{share:.1%}")
    captions = [f"ranked list: {result.out_dir / ISSUES_FILE}"]
    if result.ferplus:
        fp = result.ferplus
        captions.insert(0, (
            f"FER+ majority disagrees with {fp['flagged']['disagree_rate'] or 0:.1%} of flagged and "
            f"{fp['unflagged']['disagree_rate'] or 0:.1%} of unflagged FER2013 samples "
            f"(recall {fp['recall'] or 0:.1%})"))
    if result.excluded:
        captions.append(f"{result.excluded} flagged samples excluded from training ({EXCLUDED_FILE})")
    table.caption = "\n".join(captions)
    return table
