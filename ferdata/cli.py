"""The ferdata command line: one command per stage, plus sample, build, review and report.

Stage modules are imported inside commands so that ``ferdata --help`` stays fast.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn, Optional, TypeVar

import typer
from rich.console import Console

from ferdata.layout import Layout
from ferdata.params import load_params, section

if TYPE_CHECKING:
    import fiftyone as fo

    from ferdata.test_time import TestTimeViews
    from ferdata.executor import Executor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info logs drown the summaries

app = typer.Typer(help="Build a clean, aligned, balanced facial-expression dataset.",
                  no_args_is_help=True, add_completion=False)
T = TypeVar("T")

console = Console()
if not console.is_terminal and "COLUMNS" not in os.environ:
    console.width = 120  # rich assumes 80 for dvc repro or a log file, and cuts the tables' column names

PARAMS = typer.Option(Path("params.yaml"), "--params", help="The pipeline's params.yaml.")
ROOT = typer.Option(Path("."), "--root", help="The pipeline folder (holding dvc.yaml).")


def _line(text: str, style: str | None = None) -> None:
    """Print ``text`` as it is: no markup, no highlighting, and never folded to the
    terminal's width, so that a path in it can be copied whole."""
    console.print(text, style=style, markup=False, highlight=False, soft_wrap=True)


def _fail(message: str) -> NoReturn:
    _line(f"error: {message}", style="red")
    raise typer.Exit(2)


def _params(path: Path) -> dict:
    """params.yaml as a dict; a missing or malformed file becomes a one-line error, exit code 2."""
    return _checked(lambda: load_params(path))


def _section(params: dict, name: str, cls: type[T]) -> T:
    """A params.yaml section; a bad key or value becomes a one-line error, exit code 2."""
    return _checked(lambda: section(params, name, cls))


def _checked(stage: Callable[[], T]) -> T:
    """Run a stage; a missing input or a bad parameter becomes a one-line error, exit code 2."""
    try:
        return stage()
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def sample(
    out: Path = typer.Argument(..., help="Folder to write raw/<source>/ layouts into."),
    fer2013_rows: int = typer.Option(700, help="Rows of the generated fer2013.csv."),
    ckplus_subjects: int = typer.Option(12, help="CK+ subjects (several sequences each)."),
    jaffe_subjects: int = typer.Option(4, help="JAFFE subjects (up to 10)."),
    rafdb_images: int = typer.Option(60, help="RAF-DB images (0: no RAF-DB layout)."),
    affectnet_rows: int = typer.Option(60, help="AffectNet CSV rows (0: no AffectNet layout)."),
    folder_images: int = typer.Option(40, help="Images of the labelled folder lab-photos/ (0: none)."),
    seed: int = typer.Option(0, help="Seed: the same seed writes identical files."),
    full_fer2013: bool = typer.Option(False, help="Write a full-size fer2013.csv (35,887 rows)."),
    label_errors: float = typer.Option(
        0.06, help="Share of FER2013 Training rows given a wrong label (listed in sample_truth.json)."),
) -> None:
    """Write generated faces in every source's raw layout (tests, demo, benchmarks)."""
    from ferdata.sample import write_sample

    try:
        info = write_sample(out, fer2013_rows=fer2013_rows, ckplus_subjects=ckplus_subjects,
                            jaffe_subjects=jaffe_subjects, rafdb_images=rafdb_images,
                            affectnet_rows=affectnet_rows, folder_images=folder_images, seed=seed,
                            full_fer2013=full_fer2013, label_errors=label_errors)
    except (FileExistsError, ValueError) as exc:
        _fail(str(exc))
    console.print(info.summary())


def _executor(params: dict) -> AbstractContextManager[Executor]:
    """The executor params.yaml's ``executor:`` section describes (a local pool by default)."""
    from ferdata.executor import ExecutorParams, open_executor

    return open_executor(_section(params, "executor", ExecutorParams))


def _taxonomy_classes(params: dict) -> tuple[str, ...]:
    from ferdata.ingest import IngestParams
    from ferdata.taxonomy import Taxonomy

    return Taxonomy.of_size(_section(params, "ingest", IngestParams).taxonomy).classes


def _ingest(params: dict, layout: Layout, sources: Optional[str], strict: bool, executor: Executor) -> None:
    from ferdata.corrections import CorrectionsError
    from ferdata.ingest import IngestParams, run_ingest
    from ferdata.sources.base import MissingSourceError
    from ferdata.summaries import class_table, ingest_table, reject_lines
    from ferdata.taxonomy import Taxonomy

    cfg = _section(params, "ingest", IngestParams)
    if sources:
        cfg.sources = [s.strip() for s in sources.split(",") if s.strip()]
    try:
        result = run_ingest(cfg, layout.raw, layout.interim, layout.corrections, executor)
    except (MissingSourceError, CorrectionsError, ValueError) as exc:
        _fail(str(exc))
    console.print(ingest_table(result))
    console.print(result.corrections.summary())
    console.print(class_table(result, Taxonomy.of_size(cfg.taxonomy).classes))
    for line in reject_lines(result.rejected, layout.raw):
        _line(f"rejected {line}")
    if (strict or cfg.strict) and result.rejected:
        console.print(f"[red]strict mode: {len(result.rejected)} rejected input(s)[/red]")
        raise typer.Exit(1)


@app.command()
def ingest(
    params: Path = PARAMS, root: Path = ROOT,
    raw_dir: Optional[Path] = typer.Option(None, help="Raw data folder (default ROOT/raw)."),
    out: Optional[Path] = typer.Option(None, help="Processed folder (default ROOT/processed)."),
    sources: Optional[str] = typer.Option(None, help="Comma-separated sources (default: params)."),
    strict: bool = typer.Option(False, help="Exit non-zero if any input was rejected."),
) -> None:
    """Read raw/<source>/ into processed/interim/manifest.parquet, with rejects and an account."""
    p = _params(params)
    with _executor(p) as executor:
        _ingest(p, Layout(root, raw_dir, out), sources, strict, executor)


def _align(params: dict, layout: Layout, executor: Executor) -> None:
    from ferdata.align import AlignParams, run_align, summary_table

    cfg = _section(params, "align", AlignParams)
    result = _checked(lambda: run_align(cfg, layout.interim, layout.raw, layout.aligned, executor))
    console.print(summary_table(result))


@app.command()
def align(
    params: Path = PARAMS, root: Path = ROOT,
    raw_dir: Optional[Path] = typer.Option(None, help="Raw data folder (default ROOT/raw)."),
    out: Optional[Path] = typer.Option(None, help="Processed folder (default ROOT/processed)."),
) -> None:
    """Align every face with dlib's 68 landmarks and normalise it to 48x48 grayscale."""
    p = _params(params)
    with _executor(p) as executor:
        _align(p, Layout(root, raw_dir, out), executor)


def _split(params: dict, layout: Layout, executor: Executor) -> None:
    from ferdata.split import SplitParams, run_split

    cfg = _section(params, "split", SplitParams)
    result = _checked(lambda: run_split(cfg, layout.aligned, layout.dataset, _taxonomy_classes(params), executor))
    console.print(result.summary())


@app.command()
def split(
    params: Path = PARAMS, root: Path = ROOT,
    out: Optional[Path] = typer.Option(None, help="Processed folder (default ROOT/processed)."),
) -> None:
    """Final splits, dedup and leakage: processed/aligned -> processed/dataset (class folders)."""
    p = _params(params)
    with _executor(p) as executor:
        _split(p, Layout(root, None, out), executor)


def _if_exists(path: Path) -> Path | None:
    """``path`` if it exists, else None (an optional input left out)."""
    return path if path.exists() else None


def _ferplus_votes(layout: Layout, given: Path | None) -> Path | None:
    """The FER+ votes file given, else raw/ferplus/fer2013new.csv if it exists."""
    return given or _if_exists(layout.raw / "ferplus" / "fer2013new.csv")


@app.command("label-issues")
def label_issues(
    params: Path = PARAMS, root: Path = ROOT,
    out: Optional[Path] = typer.Option(None, help="Processed folder (default ROOT/processed)."),
    ferplus_csv: Optional[Path] = typer.Option(
        None, help="FER+ votes to measure the ranking against (default ROOT/raw/ferplus/fer2013new.csv if present)."),
    truth: Optional[Path] = typer.Option(
        None, help="A generated sample's truth, to measure the ranking against its planted wrong labels "
                   "(default ROOT/raw/sample_truth.json if present)."),
) -> None:
    """Rank train by label doubt (out-of-fold CNN and cleanlab); flag the top within the budget."""
    from ferdata.issue_precision import precision_table
    from ferdata.label_issues import ISSUES_FILE, LabelIssuesParams, label_issues_table, run_label_issues

    layout = Layout(root, None, out)
    votes = _ferplus_votes(layout, ferplus_csv)
    truth = truth or _if_exists(layout.raw / "sample_truth.json")
    cfg = _section(_params(params), "label_issues", LabelIssuesParams)
    result = _checked(lambda: run_label_issues(cfg, layout.dataset, layout.label_issues, votes,
                                               layout.metrics / "label_issues.json", truth))
    console.print(label_issues_table(result))
    _line(f"every training sample, ranked: {result.out_dir / ISSUES_FILE}")
    for found in (result.ferplus, result.planted):
        if found:
            console.print(precision_table(found, result.budget))


def _balance(params: dict, layout: Layout) -> None:
    from ferdata.balance import BalanceParams, run_balance
    from ferdata.label_issues import LabelIssuesParams, excluded_ids

    exclude: set[str] = set()
    if _section(params, "label_issues", LabelIssuesParams).exclude_from_train:
        exclude = excluded_ids(layout.label_issues)
    cfg = _section(params, "balance", BalanceParams)
    result = _checked(lambda: run_balance(cfg, layout.dataset, layout.balanced, _taxonomy_classes(params),
                                          exclude=exclude))
    console.print(result.summary())


@app.command()
def balance(
    params: Path = PARAMS, root: Path = ROOT,
    out: Optional[Path] = typer.Option(None, help="Processed folder (default ROOT/processed)."),
) -> None:
    """Balance the train split (SMOTE, ADASYN, augmentation...): processed/balanced."""
    _balance(_params(params), Layout(root, None, out))


@app.command()
def build(
    sources: Optional[str] = typer.Option(None, help="Comma-separated sources, e.g. fer2013,ckplus,jaffe."),
    params: Path = PARAMS, root: Path = ROOT,
    raw_dir: Optional[Path] = typer.Option(None, help="Raw data folder (default ROOT/raw)."),
    out: Optional[Path] = typer.Option(None, help="Processed folder (default ROOT/processed)."),
    strict: bool = typer.Option(False, help="Stop with exit code 1 if any input was rejected."),
) -> None:
    """Build the dataset without DVC: ingest, align, split and balance, in order."""
    p, layout = _params(params), Layout(root, raw_dir, out)
    with _executor(p) as executor:
        _ingest(p, layout, sources, strict, executor)
        _align(p, layout, executor)
        _split(p, layout, executor)
    _balance(p, layout)


@app.command()
def train(params: Path = PARAMS, root: Path = ROOT) -> None:
    """Train the compact CNN on processed/balanced; write models/ and metrics/train.json."""
    from ferdata.train import TrainParams, run_train

    layout = Layout(root)
    p = _params(params)
    cfg = _section(p, "train", TrainParams)
    result = _checked(lambda: run_train(cfg, layout.balanced, layout.dataset, layout.models, layout.metrics,
                                        _taxonomy_classes(p)))
    console.print(result.summary())


@app.command()
def evaluate(params: Path = PARAMS, root: Path = ROOT) -> None:
    """Per-class recall, confusion and per-source scores on val and test; predictions for review."""
    from ferdata.balance import BalanceParams
    from ferdata.evaluate import EvaluateParams, run_evaluate
    from ferdata.test_time import shift_beyond_training
    from ferdata.manifest import IMAGE_SIZE
    from ferdata.train import TrainParams

    layout, p = Layout(root), _params(params)
    cfg = _section(p, "evaluate", EvaluateParams)
    online = _section(p, "balance", BalanceParams).augment if _section(p, "train", TrainParams).augment else None
    warning = shift_beyond_training(cfg.views, online.shift * IMAGE_SIZE if online else 0.0)
    if warning:
        _line(f"warning: {warning}", style="yellow")
    result = _checked(lambda: run_evaluate(cfg, layout.models, layout.dataset, layout.metrics, layout.plots,
                                           layout.predictions, pipeline=layout))
    console.print(result.summary())


@app.command()
def ablate(
    params: Path = PARAMS, root: Path = ROOT,
    epochs: Optional[int] = typer.Option(None, help="Epochs per run (default: ablate.epochs, else train.epochs)."),
    arms: Optional[str] = typer.Option(
        None, help="Comma-separated arms, raw among them (default: ablate.arms): "
                   "raw,aligned,aligned+dedup,build,build+clean."),
    repeats: Optional[int] = typer.Option(None, help="Seeds per arm, seed .. seed+repeats-1 "
                                                     "(default: ablate.repeats)."),
    seed: Optional[int] = typer.Option(
        None, help="The first training seed (default: the params' seed). It seeds training only, so runs "
                   "trained elsewhere with --seed are reused by --repeats here."),
    resamples: Optional[int] = typer.Option(None, help="Bootstrap resamples (default: ablate.resamples)."),
    retrain: bool = typer.Option(False, "--retrain", help="Train every run again, even one with the same data, "
                                                          "recipe and seed kept in processed/ablation_runs/."),
    ferplus_csv: Optional[Path] = typer.Option(
        None, help="FER+ votes to also score the test and val faces against (default "
                   "ROOT/raw/ferplus/fer2013new.csv if present)."),
) -> None:
    """Train the same network on arms that differ only in data; score each on FER2013's PublicTest and PrivateTest."""
    from ferdata.ablate import AblateParams, run_ablate
    from ferdata.ablation_report import ablation_tables
    from ferdata.balance import BalanceParams
    from ferdata.evaluate import EvaluateParams
    from ferdata.train import TrainParams

    p, layout = _params(params), Layout(root)
    votes = _ferplus_votes(layout, ferplus_csv)
    given = {"epochs": epochs, "repeats": repeats, "seed": seed, "resamples": resamples, "retrain": retrain or None,
             "arms": [a.strip() for a in arms.split(",") if a.strip()] if arms else None}
    p = {**p, "ablate": {**(p.get("ablate") or {}), **{k: v for k, v in given.items() if v is not None}}}
    cfg = _section(p, "ablate", AblateParams)
    result = _checked(lambda: run_ablate(
        cfg, _section(p, "train", TrainParams), _section(p, "evaluate", EvaluateParams),
        _section(p, "balance", BalanceParams), layout, _taxonomy_classes(p), votes))
    console.print(ablation_tables(result.report))
    for problem in result.report["runs"]["unusable"]:
        _line(f"kept run not used: {problem}")
    _line(f"metrics: {result.metrics_path}; predictions: {result.predictions_path}; plot: {result.figure_path}")


@app.command()
def compare(
    a: Path = typer.Argument(..., help="Model A: a predictions.parquet, or a pipeline folder (its "
                                       "processed/predictions.parquet)."),
    b: Path = typer.Argument(..., help="Model B: the same, answered on the same faces."),
    split: str = typer.Option("test", help="The split to compare on."),
    private_test: bool = typer.Option(False, "--private-test",
                                      help="Compare on every FER2013 PrivateTest row as published (a pipeline "
                                           "folder's processed/fer2013_private_test.parquet) instead of a split."),
    arm_a: Optional[str] = typer.Option(None, "--arm-a", metavar="ARM[@SEED]",
                                        help="A is this arm of A's ablation (processed/ablation/predictions.parquet"
                                             "), every seed it ran or one; on test, implies --private-test for B."),
    arm_b: Optional[str] = typer.Option(None, "--arm-b", metavar="ARM[@SEED]", help="The same for B."),
    without_train_copies: bool = typer.Option(
        False, "--without-train-copies", help="On PrivateTest or an arm's faces, also leave out the faces either "
                                              "folder's split stage found a copy of among the training rows "
                                              "(processed/dataset/dedup.json)."),
    by: Optional[str] = typer.Option(None, "--by", metavar="FIELD",
                                     help="Also compare on bins of the faces by an align-stage field of A's "
                                          "pipeline folder: interocular, eye_angle, fit_residual or "
                                          "fit_disagreement."),
    bins: int = typer.Option(4, help="Bins of about equal size for --by."),
    resamples: int = typer.Option(2000, min=100, help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Seed of the bootstrap's resamples."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the comparison to this JSON file."),
    strict: bool = typer.Option(False, help="Exit 1 when any face is left out (only in one file, or "
                                            "labelled differently)."),
) -> None:
    """Two models on the same faces: scores, A - B and its paired-bootstrap interval."""
    from ferdata.compare import (class_mix_table, compare as compare_answers, comparison_table, read_answers,
                                 read_arm, sides_text, train_copies)
    from ferdata.compare_slices import check_cut, compare_by, slices_json
    from ferdata.files import write_json_atomic

    if private_test and split != "test":
        raise typer.BadParameter("--private-test compares FER2013's PrivateTest rows, whose split is test",
                                 param_hint="--split")
    arms_given = arm_a is not None or arm_b is not None
    if arms_given and split not in ("test", "val"):
        raise typer.BadParameter("an ablation answers FER2013's PrivateTest (test) and PublicTest (val) faces",
                                 param_hint="--split")
    private_test = private_test or (arms_given and split == "test")  # an ablation's test faces are PrivateTest
    if without_train_copies and not (private_test or arms_given):
        raise typer.BadParameter("a split's faces have no copy among the training rows (the split stage removes "
                                 "them); use it with --private-test or --arm-a/--arm-b",
                                 param_hint="--without-train-copies")

    def answers(path: Path, arm: str | None):
        return read_arm(path, arm, split) if arm is not None else read_answers(path, split, private_test)

    if by is not None:
        _checked(lambda: check_cut(by, bins))
    leave_out = _checked(lambda: train_copies([a, b])) if without_train_copies else None
    answers_a, answers_b = _checked(lambda: (answers(a, arm_a), answers(b, arm_b)))
    report = _checked(lambda: compare_answers(answers_a, answers_b, resamples, seed, leave_out))
    faces = "FER2013 PrivateTest (as published)" if private_test else split
    console.print(comparison_table(report, faces))
    _line(sides_text(report))
    console.print(class_mix_table(report))
    if by is not None:
        sliced = _checked(lambda: compare_by(a, by, bins, answers_a, answers_b, resamples, seed, leave_out))
        for piece, piece_report in sliced:
            console.print(comparison_table(piece_report, faces, piece.name))
            console.print(class_mix_table(piece_report, piece.train_share, piece.train_rows))
        report["slices"] = slices_json(by, sliced)
    if json_out is not None:
        write_json_atomic(json_out, report)
        _line(f"comparison: {json_out}")
    if strict and any(report["left_out"].values()):
        raise typer.Exit(1)


review_app = typer.Typer(invoke_without_command=True,
                         help="Review the dataset in the FiftyOne App; `review export` saves the tags.")
app.add_typer(review_app, name="review")
NAME = typer.Option("ferdata", "--name", help="FiftyOne dataset name.")
DATABASE_DIR = typer.Option(None, "--database-dir",
                            help="FiftyOne database folder (default $FIFTYONE_DATABASE_DIR or ~/.ferdata/fiftyone).")


def _model_outputs(layout: Layout, rows, dropped, views: TestTimeViews):
    """The trained model's penultimate features for the review ``rows`` and its predictions
    for the ``dropped`` rows; ``(None, {})`` without a model."""
    if not (layout.models / "model.keras").exists():
        return None, {}
    from ferdata.manifest import pixels_to_array
    from ferdata.model import embed
    from ferdata.review_conflicts import conflict_predictions
    from ferdata.train import load_model

    model, classes = load_model(layout.models)
    embeddings = embed(model, pixels_to_array(rows["pixels"]))
    return embeddings, ({} if dropped is None else conflict_predictions(model, dropped, classes, views))


@review_app.callback()
def review(
    ctx: typer.Context, params: Path = PARAMS, root: Path = ROOT, name: str = NAME,
    host: str = typer.Option("127.0.0.1", help="Address the App listens on."),
    port: int = typer.Option(5151, help="Port the App listens on."),
    no_launch: bool = typer.Option(False, "--no-launch", help="Build the dataset only."),
    database_dir: Optional[Path] = DATABASE_DIR,
    include_synthetic: bool = typer.Option(False, help="Also show SMOTE / augmented faces."),
) -> None:
    """Build the FiftyOne review dataset (predictions, label issues, saved views) and serve the App."""
    if ctx.invoked_subcommand:
        return
    from ferdata.evaluate import EvaluateParams
    from ferdata.review import build_review_dataset, launch, review_summary, review_table
    from ferdata.review_conflicts import label_conflict_table

    p, layout = _params(params), Layout(root)
    views = _section(p, "evaluate", EvaluateParams).views

    def build() -> fo.Dataset:
        dropped = label_conflict_table(layout.dataset, layout.aligned, layout.review / "label_conflicts")
        rows = review_table(layout.dataset, _if_exists(layout.balanced), include_synthetic, dropped)
        embeddings, dropped_predictions = _model_outputs(layout, rows, dropped, views)
        return build_review_dataset(
            name, layout.dataset, _if_exists(layout.predictions), embeddings,
            _if_exists(layout.balanced), include_synthetic,
            _if_exists(layout.label_issues / "label_issues.parquet"), dropped,
            dropped_predictions=dropped_predictions, rows=rows,
            classes=_taxonomy_classes(p), database_dir=database_dir, seed=p.get("seed", 0))

    ds = _checked(build)
    console.print(review_summary(ds))
    if not no_launch:
        launch(ds, host=host, port=port, wait=True)


@review_app.command("export")
def review_export(
    params: Path = PARAMS, root: Path = ROOT, name: str = NAME, database_dir: Optional[Path] = DATABASE_DIR,
    out: Optional[Path] = typer.Option(None, help="Corrections file (default ROOT/corrections.csv)."),
) -> None:
    """Write the App's relabel:<class> and exclude tags to corrections.csv (read by the next ingest)."""
    from ferdata.corrections import CorrectionsError, export_corrections
    from ferdata.fiftyone_env import fiftyone
    from ferdata.manifest import read_table

    fo, layout = fiftyone(database_dir), Layout(root)
    if not fo.dataset_exists(name):
        _fail(f"no review dataset {name!r}; run `ferdata review` first")
    known = _checked(lambda: {sample_id for table in ("manifest.parquet", "dropped.parquet")
                              for sample_id in read_table(layout.dataset / table)["sample_id"].to_pylist()
                              if sample_id})
    try:
        result = export_corrections(fo.load_dataset(name), out or layout.corrections, known,
                                    _taxonomy_classes(_params(params)))
    except CorrectionsError as exc:
        _fail(str(exc))
    console.print(result.summary())


@app.command()
def report(params: Path = PARAMS, root: Path = ROOT) -> None:
    """Write processed/reports/bias.md: class x source composition, quality and recall by source."""
    from ferdata.bias import BiasParams, write_bias_report

    layout, cfg = Layout(root), _section(_params(params), "report", BiasParams)
    result = _checked(lambda: write_bias_report(layout.dataset, _if_exists(layout.predictions),
                                                _if_exists(layout.metrics / "eval.json"), layout.reports, cfg))
    console.print(result.summary())
