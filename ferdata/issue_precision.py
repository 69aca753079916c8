"""How precise a label-issue ranking is: against the FER+ majority vote, and on generated
data against the wrong labels planted in it.

FER+ had ten people vote on every FER2013 image. A face "disagrees" when FER+ has a
majority class and it is not the face's label; faces without a majority (a tie, "not a
face", "unknown") count as agreeing, so the figures are a lower bound. On generated data
(``ferdata sample``), ``sample_truth.json`` lists the Training rows written with a wrong
label, so there the truth is known exactly. Precision at a rank is the share of wrong (or
disagreeing) labels among the top of the ranking; the base rate, their share among all
faces the reference covers, is what a random pick reaches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from rich.table import Table

from ferdata.ferplus import fer2013_row, majority_labels, read_ferplus
from ferdata.taxonomy import Taxonomy

#: The fixed ranks reported beside the budget: the top 1%, 5% and 10% of the ranked faces.
RANK_SHARES: tuple[float, ...] = (0.01, 0.05, 0.10)
BUDGET = "budget"


def rank_key(share: float) -> str:
    """The report's key for a fixed rank: 0.05 -> ``top_5%``."""
    return f"top_{share:.0%}"


def ferplus_reference(train: pa.Table, ferplus_csv: Path | None) -> tuple[list[bool], list[str | None]]:
    """For each row of ``train``: whether FER+ voted on it, and its FER+ majority class.

    Votes come from fer2013new.csv (joined by FER2013 row number); without it, a
    ``soft_label`` column holding FER+ vote shares serves (majority: a share above 0.5).
    """
    sources = train["source"].to_pylist()
    if ferplus_csv is not None:
        votes = read_ferplus(ferplus_csv)
        majority = majority_labels(votes)
        rows = [fer2013_row(sid) if source == "fer2013" else None
                for sid, source in zip(train["sample_id"].to_pylist(), sources)]
        voted = [r is not None and r < len(majority) for r in rows]
        return voted, [majority[r] if ok else None for r, ok in zip(rows, voted)]
    if "soft_label" not in train.column_names:
        return [False] * train.num_rows, [None] * train.num_rows
    voted, found = [], []
    for source, soft in zip(sources, train["soft_label"].to_pylist()):
        ok = source == "fer2013" and bool(soft)
        top = int(np.argmax(soft)) if ok else -1
        voted.append(ok)
        found.append(Taxonomy.of_size(len(soft)).classes[top] if ok and soft[top] > 0.5 else None)
    return voted, found


def _group(hits: np.ndarray, base: float, hit_key: str) -> dict:
    n, d = len(hits), int(hits.sum())
    precision = d / n if n else None
    return {"faces": n, hit_key: d, "precision": None if precision is None else round(precision, 6),
            "lift": round(precision / base, 4) if precision is not None and base else None}


def _precision(hits: np.ndarray, flagged: np.ndarray, hit_key: str) -> dict:
    """Precision of a ranking at the top 1%, 5% and 10% and at the budget; ``hits`` (the
    reference's wrong labels) and ``flagged`` are in rank order, over the faces it covers."""
    n, total = len(hits), int(hits.sum())
    base = total / n
    ranks = {rank_key(s): _group(hits[:max(1, round(s * n))], base, hit_key) for s in RANK_SHARES}
    ranks[BUDGET] = _group(hits[flagged], base, hit_key)
    return {
        "faces": n,
        hit_key: total,
        "base_rate": round(base, 6),
        "at_rank": ranks,
        "recall_at_budget": round(int(hits[flagged].sum()) / total, 6) if total else None,
    }


def precision_at_ranks(issues: pa.Table) -> dict | None:
    """Precision against FER+ at the top 1%, 5% and 10% of the ranking and at the budget.

    ``issues`` is in rank order with the columns ``label``, ``is_label_issue``,
    ``ferplus_voted`` and ``ferplus_majority``. Only faces FER+ voted on count, so the top
    5% is the first 5% of those; None when FER+ voted on none.
    """
    voted = np.array(issues["ferplus_voted"].to_pylist(), dtype=bool)
    if not voted.any():
        return None
    labels = np.array(issues["label"].to_pylist(), dtype=object)[voted]
    majority = np.array(issues["ferplus_majority"].to_pylist(), dtype=object)[voted]
    flagged = np.array(issues["is_label_issue"].to_pylist(), dtype=bool)[voted]
    disagree = np.array([m is not None and m != label for m, label in zip(majority, labels)])
    found = _precision(disagree, flagged, "disagree")
    return {"faces": found.pop("faces"), "with_majority": int(sum(m is not None for m in majority)), **found}


@dataclass(frozen=True)
class PlantedTruth:
    """What a generated sample's ``sample_truth.json`` says about its labels."""

    file_name: str  # for reports
    faces: frozenset[str]  # the sample ids it covers
    expressions: dict[str, str]  # sample id of each planted wrong label -> the expression drawn


def read_planted(truth_json: Path) -> PlantedTruth | None:
    """The planted wrong labels of ``sample_truth.json``; None when it plants none."""
    path = Path(truth_json)
    try:
        truth = json.loads(path.read_text())
        faces, planted = frozenset(truth["faces"]), truth.get("label_errors") or {}
        expressions = {sid: entry["expression"] for sid, entry in planted.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a generated sample's truth file ({type(exc).__name__}: {exc})") from exc
    return PlantedTruth(path.name, faces, expressions) if expressions else None


def planted_precision(issues: pa.Table, truth: PlantedTruth) -> dict | None:
    """Precision against the wrong labels a generated sample planted, at the same ranks as
    :func:`precision_at_ranks`.

    ``issues`` is in rank order with ``sample_id``, ``label`` and ``is_label_issue``. The
    faces counted are those the truth covers; a face is wrong while its label differs from
    the expression drawn (a review that fixed it makes it right). None when the truth covers
    none of the faces.
    """
    covered = np.array([sid in truth.faces for sid in issues["sample_id"].to_pylist()], dtype=bool)
    if not covered.any():
        return None
    ids = np.array(issues["sample_id"].to_pylist(), dtype=object)[covered]
    labels = np.array(issues["label"].to_pylist(), dtype=object)[covered]
    flagged = np.array(issues["is_label_issue"].to_pylist(), dtype=bool)[covered]
    wrong = np.array([label != truth.expressions.get(sid, label) for sid, label in zip(ids, labels)])
    return {"reference": f"{truth.file_name} label_errors", **_precision(wrong, flagged, "wrong")}


def precision_table(found: dict, budget_label: str) -> Table:
    """A precision table for the command line (against FER+, or the planted wrong labels when
    ``found`` comes from :func:`planted_precision`): one row per rank, the base rate last."""
    planted = "wrong" in found
    hit_key, hit_name = ("wrong", "planted wrong") if planted else ("disagree", "FER+ disagrees")
    against = "the planted wrong labels" if planted else "the FER+ majority"
    covered = "faces the truth covers" if planted else "faces FER+ voted on"
    table = Table(title=f"label issues against {against} ({found['reference']}): {found['faces']} {covered}")
    for col in ("ranked", "faces", hit_name, "precision", "lift"):
        table.add_column(col, justify="left" if col == "ranked" else "right")
    names = {rank_key(s): f"top {s:.0%}" for s in RANK_SHARES} | {BUDGET: f"flagged ({budget_label})"}
    for key, row in found["at_rank"].items():
        table.add_row(names[key], str(row["faces"]), str(row[hit_key]),
                      "-" if row["precision"] is None else f"{row['precision']:.1%}",
                      "-" if row["lift"] is None else f"{row['lift']:.2f}")
    table.add_row("all (base rate)", str(found["faces"]), str(found[hit_key]), f"{found['base_rate']:.1%}", "1.00")
    if planted:
        recall = found["recall_at_budget"]
        table.caption = (f"flagged: {'-' if recall is None else f'{recall:.1%}'} of the {found['wrong']} "
                         f"planted wrong labels")
    else:
        table.caption = ("a face disagrees when FER+ has a majority class other than its label; "
                         f"{found['faces'] - found['with_majority']} faces without a FER+ majority count as agreeing")
    return table
