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


def ablation_tables(report: dict) -> Group:
    """Scores per arm with their difference from raw; per-class recall per arm; the per-class
    differences with their intervals."""
    classes, arms, test, params = report["classes"], report["arms"], report["test"], report["params"]
    level = f"{params['confidence']:.0%}"
    overall = Table(title=f"ablate: {test['faces']:,} FER2013 PrivateTest faces, {_runs(params)}; "
                          f"differences from raw in points, [{level} paired-bootstrap interval]")
    for col in ("arm", "train faces", "test answered", "accuracy", "vs raw", "macro recall", "vs raw"):
        overall.add_column(col, justify="left" if col == "arm" else "right")
    for name, arm in arms.items():
        diff = arm["difference_from_raw"] or {}
        overall.add_row(name, f"{arm['train_faces']:,}", f"{arm['test_faces_answered']:,}",
                        share_text(arm["accuracy"]), difference_text(diff.get("accuracy")),
                        share_text(arm["macro_recall"]), difference_text(diff.get("macro_recall")))
    overall.caption = f"{test['rule']}\n{_kept_runs(report['runs'])}"

    recall = Table(title="ablate: per-class recall")
    for col in ("arm", *classes):
        recall.add_column(col, justify="left" if col == "arm" else "right")
    for name, arm in arms.items():
        recall.add_row(name, *(share_text(arm["recall"][c]) for c in classes))
    recall.add_row("support", *(str(test["support"][c]) for c in classes), end_section=True)

    tables = [overall, recall]
    if test.get("copied_in_train"):
        faces = test["faces"] - test["copied_in_train"]
        tables.append(_subset_table(report, "without_train_copies",
                                    f"ablate: the {faces:,} test faces without a copy among the training rows "
                                    f"({test['copied_in_train']:,} have one)"))
    if test.get("ferplus_majority"):
        tables.append(_subset_table(report, "against_ferplus",
                                    f"ablate: the {test['ferplus_majority']:,} test faces with a FER+ majority, "
                                    "scored against it instead of their FER2013 label"))
    others = [name for name in arms if arms[name]["difference_from_raw"] is not None]
    if not others:
        return Group(*tables)
    per_class = Table(title=f"ablate: per-class recall, difference from raw in points [{level} interval]")
    for col in ("class", *others):
        per_class.add_column(col, justify="left" if col == "class" else "right")
    for c in classes:
        per_class.add_row(c, *(difference_text(arms[name]["difference_from_raw"]["recall"][c]) for name in others))
    return Group(*tables, per_class)


def _subset_table(report: dict, key: str, title: str) -> Table:
    """Every arm's scores under ``key`` (a subset of the test faces, or other labels for them)."""
    table = Table(title=title)
    for col in ("arm", "accuracy", "vs raw", "macro recall", "vs raw"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for name, arm in report["arms"].items():
        scores = arm[key]
        diff = scores["difference_from_raw"] or {}
        table.add_row(name, share_text(scores["accuracy"]), difference_text(diff.get("accuracy")),
                      share_text(scores["macro_recall"]), difference_text(diff.get("macro_recall")))
    return table


def ablation_figure(report: dict) -> Figure:
    """Each arm's macro-recall difference from raw, in points, with its interval as a bar."""
    arms = {name: arm["difference_from_raw"]["macro_recall"] for name, arm in report["arms"].items()
            if arm["difference_from_raw"] is not None}
    names = list(arms)[::-1]  # first arm on top
    means = [arms[n]["mean"] * 100 for n in names]
    errors = [[(arms[n]["mean"] - arms[n]["low"]) * 100 for n in names],
              [(arms[n]["high"] - arms[n]["mean"]) * 100 for n in names]]
    fig = Figure(figsize=(7, 1.2 + 0.6 * max(len(names), 1)))
    ax = fig.add_subplot()
    ax.errorbar(means, range(len(names)), xerr=errors, fmt="o", color="tab:blue", capsize=4)
    for y, m in enumerate(means):
        ax.annotate(f"{m:+.1f}", (m, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.axvline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlabel("macro recall minus raw's, points")
    params, test = report["params"], report["test"]
    ax.set_title(f"ablation on {test['faces']:,} FER2013 PrivateTest faces, {_runs(params)}\n"
                 f"bars: {params['confidence']:.0%} paired-bootstrap interval", fontsize=9)
    fig.tight_layout()
    return fig
