"""How precise a label-issue ranking is, measured against the FER+ majority vote.

FER+ had ten people vote on every FER2013 image. A face "disagrees" when FER+ has a
majority class and it is not the face's label; faces without a majority (a tie, "not a
face", "unknown") count as agreeing, so the figures are a lower bound. Precision at a rank
is the share of disagreeing faces among the top of the ranking; the base rate, the share
among all faces FER+ voted on, is what a random pick reaches.
"""

from __future__ import annotations

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


def _group(disagree: np.ndarray, base: float) -> dict:
    n, d = len(disagree), int(disagree.sum())
    precision = d / n if n else None
    return {"faces": n, "disagree": d, "precision": None if precision is None else round(precision, 6),
            "lift": round(precision / base, 4) if precision is not None and base else None}


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
    n, total = len(disagree), int(disagree.sum())
    base = total / n
    ranks = {rank_key(s): _group(disagree[:max(1, round(s * n))], base) for s in RANK_SHARES}
    ranks[BUDGET] = _group(disagree[flagged], base)
    return {
        "faces": n,
        "with_majority": int(sum(m is not None for m in majority)),
        "disagree": total,
        "base_rate": round(base, 6),
        "at_rank": ranks,
        "recall_at_budget": round(int(disagree[flagged].sum()) / total, 6) if total else None,
    }


def precision_table(found: dict, budget_label: str) -> Table:
    """The precision table for the command line: one row per rank, the base rate last."""
    table = Table(title=f"label issues against the FER+ majority ({found['reference']}): "
                        f"{found['faces']} faces FER+ voted on")
    for col in ("ranked", "faces", "FER+ disagrees", "precision", "lift"):
        table.add_column(col, justify="left" if col == "ranked" else "right")
    names = {rank_key(s): f"top {s:.0%}" for s in RANK_SHARES} | {BUDGET: f"flagged ({budget_label})"}
    for key, row in found["at_rank"].items():
        table.add_row(names[key], str(row["faces"]), str(row["disagree"]),
                      "-" if row["precision"] is None else f"{row['precision']:.1%}",
                      "-" if row["lift"] is None else f"{row['lift']:.2f}")
    table.add_row("all (base rate)", str(found["faces"]), str(found["disagree"]), f"{found['base_rate']:.1%}", "1.00")
    table.caption = ("a face disagrees when FER+ has a majority class other than its label; "
                     f"{found['faces'] - found['with_majority']} faces without a FER+ majority count as agreeing")
    return table
