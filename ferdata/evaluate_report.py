"""What the evaluate stage shows of a split's scores: the per-class table it prints, the
confusion and recall plots, and the confusion CSV for DVC's plots."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from rich.table import Table

from ferdata.files import temporary_sibling


def per_class_table(split_metrics: dict, classes: Sequence[str], split: str) -> Table:
    """Per class: support, recall, precision, F1 and, where several sources are scored, recall
    per source; then the totals."""
    by_source = split_metrics["by_source"] if len(split_metrics["by_source"]) > 1 else {}
    table = Table(title=f"evaluate {split}: accuracy {split_metrics['accuracy']:.3f}, "
                        f"macro recall {split_metrics['macro_recall']:.3f} ({split_metrics['count']} images)")
    for col in ("class", "support", "recall", "precision", "F1", *(f"recall {s}" for s in by_source)):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in classes:
        per_source = [f"{v['recall'][c]:.3f}" if c in v["recall"] else "-" for v in by_source.values()]
        table.add_row(c, str(split_metrics["support"][c]), f"{split_metrics['recall'][c]:.3f}",
                      f"{split_metrics['precision'][c]:.3f}", f"{split_metrics['f1'][c]:.3f}", *per_source)
    table.add_row("all", str(split_metrics["count"]), f"{split_metrics['macro_recall']:.3f}",
                  f"{split_metrics['macro_precision']:.3f}", f"{split_metrics['macro_f1']:.3f}",
                  *(f"{v['macro_recall']:.3f}" for v in by_source.values()), end_section=True)
    return table


def save_figure(fig: Figure, path: Path) -> None:
    """The figure as a PNG at ``path``, renamed into place once written."""
    tmp = temporary_sibling(path)
    fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    tmp.replace(path)


def confusion_figure(split_metrics: dict, classes: Sequence[str], split: str) -> Figure:
    """The row-normalised confusion matrix as a heat map, each cell labelled with its count."""
    counts = np.asarray(split_metrics["confusion"]["counts"])
    normalized = np.asarray(split_metrics["confusion"]["normalized"])
    fig = Figure(figsize=(7, 6))
    ax = fig.add_subplot()
    image = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the actual class")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                    color="white" if normalized[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(f"{split}: confusion (accuracy {split_metrics['accuracy']:.3f})")
    fig.tight_layout()
    return fig


def recall_figure(split_metrics: dict, classes: Sequence[str], split: str) -> Figure:
    """Per-class recall bars, each labelled with its support, and the macro recall as a line."""
    recall = [split_metrics["recall"][c] for c in classes]
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    bars = ax.bar(classes, recall, color="tab:blue")
    ax.bar_label(bars, labels=[f"n={split_metrics['support'][c]}" for c in classes], fontsize=8)
    ax.axhline(split_metrics["macro_recall"], color="tab:red", linestyle="--")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("recall")
    ax.set_title(f"{split}: per-class recall (dashed: macro recall {split_metrics['macro_recall']:.3f})")
    fig.tight_layout()
    return fig


def write_confusion_csv(path: Path, actual: Sequence[str], predicted: Sequence[str]) -> None:
    """One ``actual,predicted`` row per face (DVC's confusion template), renamed into place."""
    tmp = temporary_sibling(path)
    tmp.write_text("actual,predicted\n" + "".join(f"{a},{p}\n" for a, p in zip(actual, predicted)))
    tmp.replace(path)
