"""What the benchmarks that score one trained model's answers several ways share: their
command line (the pipeline folder, the bootstrap's resamples) and a table row per way, with
its difference from a reference way and the paired-bootstrap interval of that difference."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
from rich.table import Table

from ferdata.bootstrap import paired_difference
from ferdata.scores import class_scores

SPLITS = ("val", "test")  # choose on val; the test split is there to report once


def pipeline_arguments(doc: str) -> argparse.ArgumentParser:
    """A parser taking the pipeline folder and ``--resamples``, described by the first
    paragraph of ``doc``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("root", type=Path, nargs="?", default=Path("."), help="the pipeline folder")
    parser.add_argument("--resamples", type=int, default=2000, help="paired-bootstrap resamples of the faces")
    return parser


def difference_cells(labels: np.ndarray, guesses: np.ndarray, reference: np.ndarray, n_classes: int,
                     resamples: int) -> list[str]:
    """``+0.65 [-0.03, +1.33]`` for accuracy and for macro recall: ``guesses`` against
    ``reference`` on the same faces, in points."""
    diff = paired_difference(labels, [guesses == labels], [reference == labels], n_classes, resamples, 0)
    return [f"{100 * d['mean']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"
            for d in (diff["accuracy"], diff["macro_recall"])]


def add_split_rows(table: Table, split: str, labels: np.ndarray, guesses: dict[str, np.ndarray],
                   classes: Sequence[str], resamples: int, per_class: bool = False) -> None:
    """One row per way of answering (the first is the reference): split, faces, the way,
    accuracy and macro recall with their differences from the reference, and with
    ``per_class`` each class's recall."""
    reference = next(iter(guesses.values()))
    for i, (name, guess) in enumerate(guesses.items()):
        scores = class_scores(labels, guess, classes)
        cells = ["–", "–"] if i == 0 else difference_cells(labels, guess, reference, len(classes), resamples)
        recalls = [f"{100 * scores['recall'][c]:.1f}" for c in classes] if per_class else []
        table.add_row(split, f"{len(labels):,}", name, f"{scores['accuracy']:.2%}", cells[0],
                      f"{scores['macro_recall']:.2%}", cells[1], *recalls)
