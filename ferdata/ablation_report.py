"""The ablation's report as tables for the terminal and a figure, from metrics/ablation.json."""

from __future__ import annotations

from matplotlib.figure import Figure
from rich.console import Group
from rich.table import Table


def _points(value: float | None) -> str:
    """A difference of two shares in percentage points, signed: ``+3.1``."""
    return "-" if value is None else f"{value * 100:+.1f}"


def difference_text(summary: dict | None) -> str:
    """``+3.1 [+0.4, +5.9]``: the mean difference and its interval, in points."""
    if summary is None or summary["mean"] is None:
        return "-"
    return f"{_points(summary['mean'])} [{_points(summary['low'])}, {_points(summary['high'])}]"


def share_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _runs(params: dict) -> str:
    """``2 epochs, seed 42`` or ``30 epochs, seeds 42, 43, 44``."""
    epochs, seeds = params["train"]["epochs"], params["seeds"]
    return (f"{epochs} epoch{'s' if epochs != 1 else ''}, seed{'s' if len(seeds) != 1 else ''} "
            f"{', '.join(str(s) for s in seeds)}")


def _kept_runs(runs: dict) -> str:
    """``runs: 1 trained, 4 reused from processed/ablation_runs (same data, recipe and seed; ...)``."""
    text = f"runs: {runs['trained']} trained, {runs['reused']} reused from {runs['folder']}"
    return text + (" (same data, recipe and seed; --retrain trains them again)" if runs["reused"] else "")


SPLIT_FACES = {"test": "FER2013 PrivateTest", "val": "FER2013 PublicTest (val)"}


def _on_split(report: dict, split: str) -> dict[str, dict]:
    """Every arm's scores on ``split``: the arm's own entry for test, its ``val`` entry for val."""
    return {name: arm if split == "test" else arm["val"] for name, arm in report["arms"].items()}


def ablation_tables(report: dict) -> Group:
    """On the test faces, then on the val faces: scores per arm with their difference from
    raw; per-class recall per arm; the per-class differences with their intervals."""
    tables = _split_tables(report, "test")
    if report.get("val"):
        tables += _split_tables(report, "val")
    return Group(*tables)


def _split_tables(report: dict, split: str) -> list[Table]:
    """The tables of one split's scores (see :func:`ablation_tables`)."""
    classes, faces, params = report["classes"], report[split], report["params"]
    arms = _on_split(report, split)
    level = f"{params['confidence']:.0%}"
    where = "" if split == "test" else ", val"
    overall = _scores_table(arms, f"ablate: {faces['faces']:,} {SPLIT_FACES[split]} faces, {_runs(params)}; "
                                  f"differences from raw in points, [{level} paired-bootstrap interval]")
    overall.caption = "\n".join([faces["rule"], _faces_text(report, arms, split)]
                                 + ([_kept_runs(report["runs"])] if split == "test" else []))

    recall = Table(title=f"ablate{where}: per-class recall")
    for col in ("arm", *classes):
        recall.add_column(col, justify="left" if col == "arm" else "right")
    for name, arm in arms.items():
        recall.add_row(name, *(share_text(arm["recall"][c]) for c in classes))
    recall.add_row("support", *(str(faces["support"][c]) for c in classes), end_section=True)

    tables = [overall, recall]
    if faces.get("copied_in_train"):
        without = faces["faces"] - faces["copied_in_train"]
        tables.append(_subset_table(arms, "without_train_copies",
                                    f"ablate{where}: the {without:,} {split} faces without a copy among the "
                                    f"training rows ({faces['copied_in_train']:,} have one)"))
    if faces.get("ferplus_majority"):
        tables.append(_subset_table(arms, "against_ferplus",
                                    f"ablate{where}: the {faces['ferplus_majority']:,} {split} faces with a FER+ "
                                    "majority, scored against it instead of their FER2013 label"))
    others = [name for name in arms if arms[name]["difference_from_raw"] is not None]
    if others:
        per_class = Table(title=f"ablate{where}: per-class recall, difference from raw in points [{level} interval]")
        for col in ("class", *others):
            per_class.add_column(col, justify="left" if col == "class" else "right")
        for c in classes:
            per_class.add_row(c, *(difference_text(arms[name]["difference_from_raw"]["recall"][c]) for name in others))
        tables.append(per_class)
    return tables


def _faces_text(report: dict, arms: dict[str, dict], split: str) -> str:
    """``train faces: raw 28,560, build 26,554; test faces answered: raw 3,573, build 3,553``."""
    train = ", ".join(f"{name} {report['arms'][name]['train_faces']:,}" for name in arms)
    answered = ", ".join(f"{name} {arm['test_faces_answered' if split == 'test' else 'faces_answered']:,}"
                         for name, arm in arms.items())
    return f"train faces: {train}; {split} faces answered: {answered}"


def _subset_table(arms: dict[str, dict], key: str, title: str) -> Table:
    """Every arm's scores under ``key`` (a subset of the faces, or other labels for them)."""
    return _scores_table({name: arm[key] for name, arm in arms.items()}, title)


def _scores_table(scores: dict[str, dict], title: str) -> Table:
    """Each arm's accuracy and macro recall, with their differences from raw."""
    table = Table(title=title)
    for col in ("arm", "accuracy", "vs raw", "macro recall", "vs raw"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for name, arm in scores.items():
        diff = arm["difference_from_raw"] or {}
        table.add_row(name, share_text(arm["accuracy"]), difference_text(diff.get("accuracy")),
                      share_text(arm["macro_recall"]), difference_text(diff.get("macro_recall")))
    return table


# legend (of the face count), the arm's entry holding the scores (None: all faces), marker, colour
FIGURE_SERIES = (("all {:,}", None, "o", "tab:blue"),
                 ("{:,} without a copy in train", "without_train_copies", "s", "tab:orange"))
SERIES_GAP = 0.3  # how far below its arm's line the second series is drawn


def ablation_figure(report: dict) -> Figure:
    """Each arm's macro-recall difference from raw, in points, with its interval as a bar: one
    panel for the test faces and one for the val faces when the report has them; in each, on
    all the faces and, a little below, on those without a copy among the training rows."""
    splits = [split for split in ("test", "val") if report.get(split)]
    names = [name for name, arm in report["arms"].items() if arm["difference_from_raw"] is not None][::-1]
    fig = Figure(figsize=(5.5 * len(splits), 1.6 + 0.9 * max(len(names), 1)))
    axes = fig.subplots(1, len(splits), sharey=True, squeeze=False)[0]
    for ax, split in zip(axes, splits):
        arms, faces = _on_split(report, split), report[split]
        series = [s for s in FIGURE_SERIES if s[1] is None or faces.get("copied_in_train")]
        for offset, (label, key, marker, colour) in zip((0.0, -SERIES_GAP), series):
            entries = [arms[n] if key is None else arms[n][key] for n in names]
            diffs = [e["difference_from_raw"]["macro_recall"] for e in entries]
            means = [d["mean"] * 100 for d in diffs]
            errors = [[(d["mean"] - d["low"]) * 100 for d in diffs], [(d["high"] - d["mean"]) * 100 for d in diffs]]
            ys = [y + offset for y in range(len(names))]
            count = faces["faces"] - (faces["copied_in_train"] if key else 0)
            ax.errorbar(means, ys, xerr=errors, fmt=marker, color=colour, capsize=4, label=label.format(count))
            for y, m in zip(ys, means):
                ax.annotate(f"{m:+.1f}", (m, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_title(f"{SPLIT_FACES[split]} faces", fontsize=9)
        ax.set_xlabel("macro recall minus raw's, points")
        ax.legend(fontsize=8, loc="best")
    shift = SERIES_GAP / 2 if any(report[split].get("copied_in_train") for split in splits) else 0.0
    axes[0].set_yticks([y - shift for y in range(len(names))], names)
    axes[0].set_ylim(-0.6 - SERIES_GAP, len(names) - 0.4)
    fig.suptitle(f"ablation, {_runs(report['params'])}; "
                 f"bars: {report['params']['confidence']:.0%} paired-bootstrap interval", fontsize=9)
    fig.tight_layout()
    return fig
