"""The bias report: where each class's faces come from, and what a model could learn instead.

A class drawn mostly from one source (CK+'s lab lighting, JAFFE's ten women) lets a model
learn the source's look rather than the expression. The report shows the class x source
composition, subjects per class, brightness, contrast and alignment by class and source,
and recall per source and class, and prints a WARNING line for every such confound.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ferdata.manifest import pixels_to_array, read_table  # noqa: E402
from ferdata.taxonomy import CLASSES_8  # noqa: E402

REPORT_NAME = "bias.md"
FIGURE_PREFIX = "bias_"


@dataclass
class BiasParams:
    """The ``report:`` section of params.yaml: when a class counts as confounded with a source."""

    class_share: float = 0.8  # more than this share of a class comes from one source ...
    source_share: float = 0.5  # ... while that source is less than this share of the data


@dataclass(frozen=True)
class Confound:
    """A class that comes mostly from one source that is a minority of the data."""

    label: str
    source: str
    class_share: float  # of the class's samples, the share from ``source``
    source_share: float  # of all samples, the share from ``source``

    def __str__(self) -> str:
        return (f"WARNING: {self.class_share:.0%} of '{self.label}' comes from {self.source}, which is "
                f"only {self.source_share:.0%} of the data: a model can learn {self.source}'s look "
                f"instead of the expression")


@dataclass
class BiasReport:
    """Where the report was written, its figures and its warnings."""

    path: Path
    figures: list[Path] = field(default_factory=list)
    confounds: list[Confound] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"bias report: {self.path} ({len(self.figures)} figures)"]
        return "\n".join(lines + [str(c) for c in self.confounds])


def find_confounds(counts: pd.DataFrame, params: BiasParams) -> list[Confound]:
    """Confounds in a class x source table of sample counts (rows classes, columns sources)."""
    total = counts.to_numpy().sum()
    found = []
    for label, row in counts.iterrows():
        n = row.sum()
        for source, k in row.items():
            class_share, source_share = k / n if n else 0.0, counts[source].sum() / total
            if class_share > params.class_share and source_share < params.source_share:
                found.append(Confound(str(label), str(source), float(class_share), float(source_share)))
    return found


def write_bias_report(dataset_dir: Path, predictions_path: Path | None = None,
                      eval_json: Path | None = None, out_dir: Path = Path("processed/reports"),
                      params: BiasParams | None = None) -> BiasReport:
    """Write ``out_dir/bias.md`` and its ``bias_*.png`` figures from the dataset manifest.

    ``predictions_path`` (predictions.parquet) adds recall per source and class;
    ``eval_json`` adds the model's headline figures. Files are written to a temporary
    folder first and moved into place.
    """
    params = params or BiasParams()
    frame = _frame(read_table(Path(dataset_dir) / "manifest.parquet"))
    classes = _classes(frame)
    sources = sorted(frame["source"].unique())
    predictions = read_table(Path(predictions_path)).to_pandas() if predictions_path is not None else None
    evaluation = json.loads(Path(eval_json).read_text()) if eval_json is not None else None

    out_dir = Path(out_dir)
    tmp = out_dir / ".bias.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = pd.crosstab(frame["label"], frame["source"]).reindex(index=classes, columns=sources, fill_value=0)
    confounds = find_confounds(counts, params)
    md = [
        "# Bias report",
        "",
        f"{len(frame)} samples from {Path(dataset_dir)}; splits: "
        + ", ".join(f"{s} {n}" for s, n in frame["split"].value_counts().sort_index().items()) + ".",
        "",
        *([str(c) for c in confounds] or [
            f"No confound: no class has more than {params.class_share:.0%} of its samples from a source "
            f"that is under {params.source_share:.0%} of the data."]),
        "",
    ]
    figures = []
    md += _composition(counts, tmp, figures)
    md += _subjects(frame, classes, tmp, figures)
    md += _image_statistics(frame, classes, sources, tmp, figures)
    md += _alignment(frame, classes, sources, tmp, figures)
    if predictions is not None:
        md += _recall(predictions, classes, tmp, figures)
    if evaluation is not None:
        md += _evaluation(evaluation, Path(eval_json))
    (tmp / REPORT_NAME).write_text("\n".join(md) + "\n")

    for stale in out_dir.glob(f"{FIGURE_PREFIX}*.png"):
        if not (tmp / stale.name).exists():
            stale.unlink()
    for path in [*figures, tmp / REPORT_NAME]:
        path.replace(out_dir / path.name)
    tmp.rmdir()
    return BiasReport(out_dir / REPORT_NAME, [out_dir / p.name for p in figures], confounds)


def _frame(table) -> pd.DataFrame:
    frame = table.drop_columns(["pixels"]).to_pandas()
    images = pixels_to_array(table["pixels"]).astype(np.float32)
    frame["brightness"] = images.mean(axis=(1, 2))
    frame["contrast"] = images.std(axis=(1, 2))
    return frame


def _classes(frame: pd.DataFrame) -> list[str]:
    """The taxonomy's classes in index order: the seven always, contempt when present."""
    present = set(frame["label"])
    return [c for i, c in enumerate(CLASSES_8) if i < 7 or c in present]


def _table(frame: pd.DataFrame, fmt=str, index_name: str = "") -> list[str]:
    """A DataFrame as a Markdown table."""
    head = [index_name or (frame.index.name or ""), *map(str, frame.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for idx, row in frame.iterrows():
        label = " / ".join(map(str, idx)) if isinstance(idx, tuple) else str(idx)
        lines.append("| " + " | ".join([label, *(fmt(v) for v in row)]) + " |")
    return lines + [""]


def _percent(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0%}"


def _save(fig, tmp: Path, name: str, figures: list[Path]) -> str:
    path = tmp / f"{FIGURE_PREFIX}{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    figures.append(path)
    return f"![{name}]({path.name})"


def _composition(counts: pd.DataFrame, tmp: Path, figures: list[Path]) -> list[str]:
    with_totals = counts.copy()
    with_totals["all"] = counts.sum(axis=1)
    with_totals.loc["all"] = with_totals.sum(axis=0)
    shares = counts.div(counts.sum(axis=1).replace(0, np.nan), axis=0)
    shares.loc["all"] = counts.sum(axis=0) / counts.to_numpy().sum()

    fig, ax = plt.subplots(figsize=(8, 4.5))
    left = np.zeros(len(shares))
    for source in shares.columns:
        values = shares[source].fillna(0).to_numpy()
        ax.barh(shares.index, values, left=left, label=source)
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("share of the class's samples")
    ax.set_xlim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    ax.set_title("Where each class comes from")
    image = _save(fig, tmp, "composition", figures)
    return ["## Class x source composition", "", "Samples:", "", *_table(with_totals, index_name="class"),
            "Share of each class from each source (last row: share of all data):", "",
            *_table(shares, _percent, "class"), image, ""]


def _subjects(frame: pd.DataFrame, classes: list[str], tmp: Path, figures: list[Path]) -> list[str]:
    with_subjects = frame[frame["subject"].notna()]
    if with_subjects.empty:
        return ["## Subjects per class", "", "No source in this dataset records subjects.", ""]
    subjects = (with_subjects.groupby(["label", "source"])["subject"].nunique().unstack(fill_value=0)
                .reindex(index=classes, fill_value=0))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(subjects.columns)
    x = np.arange(len(classes))
    for i, source in enumerate(subjects.columns):
        ax.bar(x + i * width, subjects[source], width, label=source)
    ax.set_xticks(x + width * (len(subjects.columns) - 1) / 2, classes)
    ax.set_ylabel("distinct subjects")
    ax.legend(fontsize="small")
    ax.set_title("Subjects per class (sources that record them)")
    image = _save(fig, tmp, "subjects", figures)
    return ["## Subjects per class", "",
            "Few people behind a class means a model can learn faces instead of expressions.", "",
            *_table(subjects, index_name="class"), image, ""]


def _image_statistics(frame: pd.DataFrame, classes: list[str], sources: list[str], tmp: Path,
                      figures: list[Path]) -> list[str]:
    stats = frame.groupby(["label", "source"])[["brightness", "contrast"]].mean()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    width = 0.8 / len(sources)
    x = np.arange(len(classes))
    for ax, column in zip(axes, ("brightness", "contrast")):
        for i, source in enumerate(sources):
            data = [frame.loc[(frame["label"] == c) & (frame["source"] == source), column].to_numpy()
                    for c in classes]
            positions = [p for p, d in zip(x + i * width, data) if len(d)]
            box = ax.boxplot([d for d in data if len(d)], positions=positions, widths=width * 0.9,
                             patch_artist=True, showfliers=False, manage_ticks=False)
            for patch in box["boxes"]:
                patch.set_facecolor(f"C{i}")
            ax.plot([], [], color=f"C{i}", linewidth=6, label=source)
        ax.set_xticks(x + width * (len(sources) - 1) / 2, classes, rotation=30)
        ax.set_title(f"{column} (pixel {'mean' if column == 'brightness' else 'std'})")
    axes[0].legend(fontsize="small")
    image = _save(fig, tmp, "brightness_contrast", figures)
    table = stats.unstack("source").reindex(classes)
    table.columns = [f"{stat} {source}" for stat, source in table.columns]
    return ["## Brightness and contrast by class and source", "",
            "Mean pixel value (brightness) and pixel standard deviation (contrast), averaged:", "",
            *_table(table, lambda v: "–" if pd.isna(v) else f"{v:.1f}", "class"), image, ""]


def _alignment(frame: pd.DataFrame, classes: list[str], sources: list[str], tmp: Path,
               figures: list[Path]) -> list[str]:
    status = (pd.crosstab([frame["source"], frame["align_status"]], frame["label"])
              .reindex(columns=classes, fill_value=0))
    shares = pd.crosstab(frame["source"], frame["align_status"], normalize="index").reindex(sources)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    left = np.zeros(len(shares))
    for name in shares.columns:
        values = shares[name].to_numpy()
        ax.barh(shares.index, values, left=left, label=name)
        left += values
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the source's samples")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    ax.set_title("Alignment status by source")
    image = _save(fig, tmp, "alignment", figures)
    return ["## Alignment status by class and source", "", *_table(status, index_name="source / status"),
            image, ""]


def _recall(predictions: pd.DataFrame, classes: list[str], tmp: Path, figures: list[Path]) -> list[str]:
    scope = "test"
    if (predictions["split"] == "test").any():
        predictions = predictions[predictions["split"] == "test"]
    else:
        scope = "all predicted"
    grouped = predictions.groupby(["label", "source"])["correct"]
    recall = grouped.mean().unstack().reindex(index=classes)
    support = grouped.size().unstack().reindex(index=classes)
    cells = recall.copy().astype(object)
    for label in recall.index:
        for source in recall.columns:
            n = support.loc[label, source]
            cells.loc[label, source] = "–" if pd.isna(n) else f"{recall.loc[label, source]:.0%} ({int(n)})"

    fig, ax = plt.subplots(figsize=(1.6 * len(recall.columns) + 3, 4.5))
    im = ax.imshow(recall.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(recall.columns)), recall.columns)
    ax.set_yticks(range(len(classes)), classes)
    for (i, j), value in np.ndenumerate(recall.to_numpy(dtype=float)):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.0%}", ha="center", va="center", color="w" if value < 0.6 else "k")
    fig.colorbar(im, ax=ax, label="recall")
    ax.set_title(f"Recall by source and class ({scope} samples)")
    image = _save(fig, tmp, "recall", figures)
    return [f"## Recall by source and class ({scope} samples)", "",
            "A class recognised well in one source and poorly in another points at a source cue.", "",
            *_table(cells, index_name="class"), image, ""]


def _evaluation(evaluation: dict, path: Path) -> list[str]:
    figures = {k: v for k, v in evaluation.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    lines = ["## Model", "", f"Headline figures from {path}:", ""]
    lines += [f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in sorted(figures.items())]
    return lines + [""]
