"""Copies in real FER2013: how many rows of each class the CSV repeats, and how often
FER+'s ten annotators confirm the labels of copies that disagree.

With ``--csv``, the share of each class's rows, per Usage, whose 2,304 pixels another row
of the CSV repeats exactly: what dedup will remove unevenly, before any alignment.

The split stage groups copies of one face; when the copies carry different labels
(``dedup.json``: ``label_conflict``), ``split.label_conflicts: drop`` removes every copy.
This script measures whether such labels are worse than the rest, against the FER+ majority
(``ferplus-majority``: one class with more than half of the votes):

* conflicting copies: each copy's label against the majority of the votes pooled over all
  copies of its group (the copies show one face, so their annotators are pooled);
* the baselines: faces without a copy (their own votes), and copies whose labels agree
  (pooled votes, as above).

DATASET is the split stage's output folder (``processed/dataset``) of a FER2013 build, under
either ``label_conflicts`` setting; FERPLUS is your copy of ``fer2013new.csv``.

    .venv/bin/python benchmarks/fer2013_copies.py processed/dataset raw/ferplus/fer2013new.csv \
        --csv raw/fer2013/fer2013.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from ferdata.ferplus import FerplusVotes, fer2013_row, read_ferplus, verdict
from ferdata.taxonomy import CLASSES_7

KINDS = ("conflicting copies", "copies that agree", "faces without a copy")


def majority(votes: FerplusVotes, rows: list[int]) -> str | None:
    """The FER+ majority class of the votes summed over ``rows`` (None: no majority)."""
    usable = [r for r in rows if r < len(votes) and r not in votes.unreadable and votes.has_image[r]]
    if not usable:
        return None
    return verdict(np.sum([votes.votes[r] for r in usable], axis=0), True, "ferplus-majority").label


def faces_by_kind(dataset: Path) -> dict[str, list[tuple[str, list[int]]]]:
    """Per kind, each FER2013 face's label and the FER2013 rows whose votes judge it."""
    report = json.loads((dataset / "dedup.json").read_text())
    faces: dict[str, list[tuple[str, list[int]]]] = {kind: [] for kind in KINDS}
    grouped = set()
    for group in report["groups"]:
        members = [m for m in group["members"] if fer2013_row(m["sample_id"]) is not None]
        rows = [fer2013_row(m["sample_id"]) for m in members]
        kind = KINDS[0] if group["label_conflict"] else KINDS[1]
        faces[kind] += [(m["label"], rows) for m in members]
        grouped.update(m["sample_id"] for m in group["members"])
    kept = pq.read_table(dataset / "manifest.parquet", columns=["sample_id", "label"]).to_pylist()
    faces[KINDS[2]] = [(r["label"], [fer2013_row(r["sample_id"])]) for r in kept
                       if r["sample_id"] not in grouped and fer2013_row(r["sample_id"]) is not None]
    return faces


def repeated_rows(csv_path: Path) -> tuple[Counter, Counter]:
    """Rows per (Usage, class), and those whose pixels another row of the CSV repeats."""
    with open(csv_path, newline="") as f:
        rows = [(r["Usage"], CLASSES_7[int(r["emotion"])], r["pixels"]) for r in csv.DictReader(f)]
    copies = Counter(pixels for _, _, pixels in rows)
    total, repeated = Counter(), Counter()
    for usage, label, pixels in rows:
        total[usage, label] += 1
        repeated[usage, label] += copies[pixels] > 1
    return total, repeated


def repeated_table(csv_path: Path) -> Table:
    total, repeated = repeated_rows(csv_path)
    table = Table(title=f"{csv_path}: rows whose pixels another row repeats")
    table.add_column("Usage")
    for label in CLASSES_7:
        table.add_column(label, justify="right")
    for usage in sorted({u for u, _ in total}, key=("Training", "PublicTest", "PrivateTest").index):
        table.add_row(usage, *(f"{repeated[usage, c]:,} of {total[usage, c]:,} "
                               f"({repeated[usage, c] / max(total[usage, c], 1):.1%})" for c in CLASSES_7))
    return table


def outcomes(votes: FerplusVotes, faces: list[tuple[str, list[int]]]) -> Counter:
    """How many labels the FER+ majority confirms (agree), contradicts (other) or cannot
    judge (none)."""
    found = Counter()
    for label, rows in faces:
        majority_class = majority(votes, rows)
        found["none" if majority_class is None else "agree" if majority_class == label else "other"] += 1
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="the split stage's output folder (processed/dataset)")
    parser.add_argument("ferplus", type=Path, help="your copy of FER+'s fer2013new.csv")
    parser.add_argument("--csv", type=Path, help="also count the rows your fer2013.csv repeats")
    args = parser.parse_args()
    console = Console(width=200)
    if args.csv:
        console.print(repeated_table(args.csv))
    votes = read_ferplus(args.ferplus)
    table = Table(title="FER2013 labels against the FER+ majority")
    for col in ("faces", "count", "FER+ agrees", "FER+ names another class", "no FER+ majority"):
        table.add_column(col, justify="left" if col == "faces" else "right")
    for kind, faces in faces_by_kind(args.dataset).items():
        outcome, n = outcomes(votes, faces), max(len(faces), 1)
        table.add_row(kind, f"{len(faces):,}", *(f"{outcome[k] / n:.1%}" for k in ("agree", "other", "none")))
    console.print(table)


if __name__ == "__main__":
    main()
