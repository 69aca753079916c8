"""The review dataset in FiftyOne: samples, predictions, brain runs, saved views, the App.

Annotators open the App on it, tag samples ``relabel:<class>`` or ``exclude`` and
:mod:`ferdata.corrections` turns the tags into corrections.csv for the next build.
Everything runs offline: the brain runs use the model's logits and our own embeddings
(the model's penultimate layer, else a PCA of the pixels), never a zoo model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferdata.fiftyone_env import fiftyone
from ferdata.manifest import pixels_to_array, read_table
from ferdata.review_conflicts import LABEL_CONFLICT
from ferdata.taxonomy import CLASSES_7

if TYPE_CHECKING:
    import fiftyone as fo

#: The tag of a face the build dropped (it has no split).
DROPPED_TAG = "dropped"
#: Tags the build sets itself; every other tag is an annotator's and survives a rebuild.
BUILD_TAGS = ("train", "val", "test", DROPPED_TAG)
SIMILARITY_KEY = "similarity"
PREDICTION_COLUMNS = ("sample_id", "predicted_label", "confidence", "logits")
LABEL_ISSUE_COLUMNS = ("sample_id", "rank", "is_label_issue", "suggested_label")


def review_table(dataset_dir: Path, balanced_dir: Path | None = None,
                 include_synthetic: bool = False, dropped: pa.Table | None = None) -> pa.Table:
    """The rows to review, in the review dataset's order, with an absolute ``filepath``.

    The dataset manifest's rows come first; with ``include_synthetic`` the balanced
    manifest's generated rows (``origin`` not ``real``) follow, then the ``dropped`` rows
    (:func:`ferdata.review_conflicts.label_conflict_table`). ``drop_reason`` is null on
    every kept row. Embeddings passed to :func:`build_review_dataset` are aligned with these rows.
    """
    dataset_dir = Path(dataset_dir)
    parts = [_with_filepath(read_table(dataset_dir / "manifest.parquet"), dataset_dir)]
    if include_synthetic:
        if balanced_dir is None:
            raise ValueError("include_synthetic needs the balanced folder (processed/balanced)")
        balanced = read_table(Path(balanced_dir) / "manifest.parquet")
        synthetic = balanced.filter(pc.not_equal(balanced["origin"], "real"))
        parts.append(_with_filepath(synthetic, Path(balanced_dir)).select(parts[0].column_names))
    parts[0] = parts[0].append_column("drop_reason", pa.nulls(parts[0].num_rows, pa.string()))
    if dropped is not None:
        parts.append(dropped)
    table = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    missing = [p for p in table["filepath"].to_pylist() if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) named in the manifest are missing, e.g. "
                                f"{', '.join(missing[:3])}; rebuild the dataset")
    return table


def _with_filepath(table: pa.Table, root: Path) -> pa.Table:
    root = root.resolve()
    paths = [str(root / p) for p in table["path"].to_pylist()]
    return table.append_column("filepath", pa.array(paths, pa.string()))


def pixel_embeddings(images: np.ndarray, components: int = 32, seed: int = 0) -> np.ndarray:
    """A PCA of the pixels: the embedding used when no trained model is at hand."""
    from sklearn.decomposition import PCA

    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    n = min(components, flat.shape[0], flat.shape[1])
    return PCA(n_components=n, random_state=seed).fit_transform(flat).astype(np.float32)


def read_predictions(path: Path) -> dict[str, dict[str, Any]]:
    """predictions.parquet as ``sample_id -> row``; a missing column or repeated id is an error."""
    table = read_table(Path(path))
    absent = [c for c in PREDICTION_COLUMNS if c not in table.column_names]
    if absent:
        raise ValueError(f"{path}: missing columns {absent}; expected at least {list(PREDICTION_COLUMNS)}")
    rows = table.select(list(PREDICTION_COLUMNS)).to_pylist()
    by_id = {r["sample_id"]: r for r in rows}
    if len(by_id) != len(rows):
        repeated = sorted(k for k, n in Counter(r["sample_id"] for r in rows).items() if n > 1)
        raise ValueError(f"{path}: sample ids occur more than once: {repeated[:5]}")
    return by_id


def build_review_dataset(
    name: str,
    dataset_dir: Path,
    predictions_path: Path | None = None,
    embeddings: np.ndarray | None = None,
    balanced_dir: Path | None = None,
    include_synthetic: bool = False,
    label_issues_path: Path | None = None,
    dropped: pa.Table | None = None,
    *,
    dropped_predictions: dict[str, dict[str, Any]] | None = None,
    rows: pa.Table | None = None,
    classes: Sequence[str] = CLASSES_7,
    top_mistakes: int = 100,
    confused_pairs: int = 3,
    database_dir: Path | None = None,
    seed: int = 0,
) -> "fo.Dataset":
    """Build (or rebuild) the persistent FiftyOne dataset ``name`` for review.

    ``embeddings`` (one row per row of :func:`review_table`) feed uniqueness and the
    similarity index; without them a PCA of the pixels does. ``label_issues_path`` (the
    label-issues stage's ranked parquet) sets each train sample's ``label_issue_rank`` and
    makes the ``likely-mislabeled`` view its flagged samples in rank order; without it the
    view is the samples of highest mistakenness. ``dropped`` rows (the faces whose copies
    disagree) are tagged ``dropped`` and make the ``label-conflicts`` view; their predictions
    come from ``dropped_predictions`` (predictions.parquet covers kept faces only). ``rows``
    is :func:`review_table` of these arguments, when the caller has read it already. A rebuild
    replaces the samples, brain runs and saved views, and keeps the annotators' tags by sample id.
    """
    fo = fiftyone(database_dir)
    table = rows if rows is not None else review_table(dataset_dir, balanced_dir, include_synthetic, dropped)
    images = pixels_to_array(table["pixels"])
    if embeddings is None:
        embeddings = pixel_embeddings(images, seed=seed)
    elif len(embeddings) != table.num_rows:
        raise ValueError(f"embeddings have {len(embeddings)} rows; the review table has {table.num_rows}")
    predictions = read_predictions(predictions_path) if predictions_path is not None else {}
    predictions.update(dropped_predictions or {})
    issues = read_label_issues(label_issues_path) if label_issues_path is not None else {}

    # built under a temporary name and renamed: a failed rebuild leaves the old one intact
    building = f"{name}.building"
    if fo.dataset_exists(building):
        fo.delete_dataset(building)
    dataset = fo.Dataset(building, persistent=True)
    _declare_fields(fo, dataset)
    dataset.add_samples(_samples(fo, table, images, predictions, issues, _annotator_tags(fo, name)),
                        progress=False)
    dataset.default_classes = list(classes)
    dataset.info = {"classes": list(classes), "dataset_dir": str(Path(dataset_dir).resolve())}
    dataset.save()
    _brain_runs(dataset, embeddings, np.asarray(table["sample_id"].to_pylist()))
    _save_views(dataset, classes, top_mistakes, confused_pairs, ranked=bool(issues))

    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    dataset.name = name
    return dataset


def read_label_issues(path: Path) -> dict[str, dict[str, Any]]:
    """The label-issues stage's ranking as ``sample_id -> {rank, flagged, suggested}``."""
    table = read_table(Path(path))
    absent = [c for c in LABEL_ISSUE_COLUMNS if c not in table.column_names]
    if absent:
        raise ValueError(f"{path}: missing columns {absent}; rerun the label-issues stage")
    return {row["sample_id"]: row for row in table.select(list(LABEL_ISSUE_COLUMNS)).to_pylist()}


def _annotator_tags(fo: Any, name: str) -> dict[str, list[str]]:
    """The tags annotators gave each sample of an existing dataset, by sample id."""
    if not fo.dataset_exists(name):
        return {}
    old = fo.load_dataset(name)
    kept = {}
    for sid, tags in zip(old.values("sample_id"), old.values("tags")):
        own = [t for t in tags if t not in BUILD_TAGS]
        if sid is not None and own:
            kept[sid] = own
    return kept


def _declare_fields(fo: Any, dataset: "fo.Dataset") -> None:
    """Declare every field up front, so that columns that happen to be all null still exist."""
    kinds = {
        "sample_id": fo.StringField, "source": fo.StringField, "subject": fo.StringField,
        "split": fo.StringField, "origin": fo.StringField, "align_status": fo.StringField,
        "drop_reason": fo.StringField,
        "fold": fo.IntField, "dup_group": fo.IntField, "eye_angle": fo.FloatField,
        "interocular": fo.FloatField, "fit_residual": fo.FloatField, "fit_disagreement": fo.FloatField,
        "brightness": fo.FloatField, "contrast": fo.FloatField,
        "label_issue_rank": fo.IntField, "label_issue": fo.BooleanField, "suggested_label": fo.StringField,
    }
    for field, kind in kinds.items():
        dataset.add_sample_field(field, kind)
    for field in ("ground_truth", "predictions"):
        dataset.add_sample_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    dataset.create_index("sample_id", unique=True)


def _samples(fo: Any, table: pa.Table, images: np.ndarray, predictions: dict[str, dict],
             issues: dict[str, dict], kept_tags: dict[str, list[str]]) -> list["fo.Sample"]:
    brightness = images.mean(axis=(1, 2))
    contrast = images.std(axis=(1, 2))
    samples = []
    for i, row in enumerate(table.select([
        "sample_id", "source", "subject", "split", "fold", "origin", "label", "align_status",
        "eye_angle", "interocular", "fit_residual", "fit_disagreement", "dup_group", "drop_reason", "filepath",
    ]).to_pylist()):
        build_tag = row["split"] or (DROPPED_TAG if row["drop_reason"] else None)
        sample = fo.Sample(
            filepath=row["filepath"],
            tags=([build_tag] if build_tag else []) + kept_tags.get(row["sample_id"], []),
            metadata=fo.ImageMetadata(width=images.shape[2], height=images.shape[1], num_channels=1),
            ground_truth=fo.Classification(label=row["label"]),
            brightness=float(brightness[i]), contrast=float(contrast[i]),
            **{k: row[k] for k in ("sample_id", "source", "subject", "split", "fold", "origin",
                                   "align_status", "eye_angle", "interocular", "fit_residual",
                                   "fit_disagreement", "dup_group", "drop_reason")},
        )
        pred = predictions.get(row["sample_id"])
        if pred is not None:
            sample["predictions"] = fo.Classification(
                label=pred["predicted_label"], confidence=float(pred["confidence"]),
                logits=np.asarray(pred["logits"], dtype=np.float32))
        issue = issues.get(row["sample_id"])
        if issue is not None:
            sample["label_issue_rank"] = issue["rank"]
            sample["label_issue"] = issue["is_label_issue"]
            sample["suggested_label"] = issue["suggested_label"]
        samples.append(sample)
    return samples


def _brain_runs(dataset: "fo.Dataset", embeddings: np.ndarray, row_ids: np.ndarray) -> None:
    """Mistakenness and hardness from the logits; uniqueness and similarity from embeddings."""
    import fiftyone.brain as fob

    predicted = dataset.exists("predictions")
    if len(predicted):
        fob.compute_mistakenness(predicted, "predictions", label_field="ground_truth",
                                 use_logits=True, progress=False)
        fob.compute_hardness(predicted, "predictions", progress=False)
    position = {sid: i for i, sid in enumerate(row_ids)}
    ordered = embeddings[[position[sid] for sid in dataset.values("sample_id")]]
    if len(dataset) > 1:
        fob.compute_uniqueness(dataset, embeddings=ordered, progress=False)
    fob.compute_similarity(dataset, embeddings=ordered, backend="sklearn",
                           brain_key=SIMILARITY_KEY, progress=False)


def confused_pairs_of(pairs: Sequence[tuple[str, str]], classes: Sequence[str],
                      top: int) -> list[tuple[str, str, int]]:
    """The ``top`` class pairs most often confused either way, from (true, predicted) pairs."""
    counts = Counter(frozenset(p) for p in pairs if p[0] != p[1] and p[1] is not None)
    order = {c: i for i, c in enumerate(classes)}
    ranked = sorted(
        ((tuple(sorted(pair, key=lambda c: order.get(c, len(order)))), n) for pair, n in counts.items()),
        key=lambda item: (-item[1], [order.get(c, len(order)) for c in item[0]]),
    )
    return [(a, b, n) for (a, b), n in ranked[:top]]


def _save_views(dataset: "fo.Dataset", classes: Sequence[str], top_mistakes: int,
                confused_pairs: int, ranked: bool) -> None:
    """Saved views for the review: doubtful labels, confusions, alignment, duplicates, slices.

    With the label-issues ranking (``ranked``), ``likely-mislabeled`` is its flagged samples,
    most likely wrong first; otherwise the samples of highest mistakenness.
    """
    from fiftyone import ViewField as F

    views: list[tuple[str, Any, str]] = []
    if ranked:
        flagged = dataset.match(F("label_issue")).sort_by("label_issue_rank")
        views.append(("likely-mislabeled", flagged,
                      f"the {len(flagged)} train samples the label-issues stage flagged, most likely wrong first"))
    elif dataset.has_field("mistakenness"):
        views.append(("likely-mislabeled",
                      dataset.exists("mistakenness").sort_by("mistakenness", reverse=True).limit(top_mistakes),
                      f"the {top_mistakes} samples whose label the model most confidently disputes"))
    if dataset.has_field("mistakenness"):
        pairs = zip(dataset.values("ground_truth.label"), dataset.values("predictions.label"))
        for a, b, n in confused_pairs_of(list(pairs), classes, confused_pairs):
            match = (((F("ground_truth.label") == a) & (F("predictions.label") == b))
                     | ((F("ground_truth.label") == b) & (F("predictions.label") == a)))
            views.append((f"confused-{a}-{b}", dataset.match(match).sort_by("mistakenness", reverse=True),
                          f"{a} <-> {b}: {n} samples predicted as the other class"))
    views.append(("alignment-failures",
                  dataset.match(F("align_status") != "aligned").sort_by("fit_disagreement", reverse=True),
                  "faces not cleanly aligned: no face, several faces, unstable fit, passthrough"))
    views.append(("duplicates", dataset.exists("dup_group").sort_by("dup_group"),
                  "duplicate groups, including leaks resolved across splits"))
    conflicts = dataset.match(F("drop_reason") == LABEL_CONFLICT).sort_by("dup_group")
    if len(conflicts):
        views.append(("label-conflicts", conflicts,
                      f"the {len(conflicts)} copies the build dropped because their labels disagree; "
                      "tag the wrong copy relabel:<class> and the next build keeps the face"))
    kept = dataset.exists("drop_reason", False)
    sources = sorted(set(kept.distinct("source")))
    for source in sources:
        views.append((f"source-{source}", kept.match(F("source") == source), f"every kept {source} sample"))
    present = Counter(zip(kept.values("ground_truth.label"), kept.values("source")))
    for label in classes:
        for source in sources:
            if present[(label, source)]:
                views.append((f"slice-{label}-{source}",
                              kept.match((F("ground_truth.label") == label) & (F("source") == source)),
                              f"{label} faces from {source} ({present[(label, source)]})"))
    for name, view, description in views:
        dataset.save_view(name, view, description=description, overwrite=True)


def review_summary(dataset: "fo.Dataset") -> str:
    """One screen about the review dataset, for the command line."""
    from fiftyone import ViewField as F

    splits = Counter(dataset.exists("drop_reason", False).values("split"))
    conflicts = len(dataset.match(F("drop_reason") == LABEL_CONFLICT))
    lines = [
        f"review dataset {dataset.name!r}: {len(dataset)} samples ("
        + ", ".join(f"{s} {n}" for s, n in sorted(splits.items()))
        + (f"; {conflicts} dropped as label conflicts)" if conflicts else ")"),
        f"with predictions: {len(dataset.exists('predictions'))}; brain runs: "
        + ", ".join(sorted(dataset.list_brain_runs())),
        "saved views: " + ", ".join(dataset.list_saved_views()),
        "tag samples relabel:<class> or exclude in the App, then run `ferdata review export`",
    ]
    return "\n".join(lines)


def app_url(host: str, port: int, dataset_name: str | None = None) -> str:
    """The address of the App, optionally opened on a dataset."""
    url = f"http://{host}:{port}/"
    return url + f"datasets/{dataset_name}" if dataset_name else url


def launch(dataset: "fo.Dataset", host: str = "127.0.0.1", port: int = 5151,
           wait: bool = True) -> "fo.Session":
    """Serve the App on ``host:port`` without opening a browser; print its address.

    With ``wait`` the call blocks until interrupted (Ctrl-C), keeping the App up for
    annotators whose browsers come and go.
    """
    fo = fiftyone()
    session = fo.launch_app(dataset, address=host, port=port, remote=True)
    print(f"FiftyOne App: {app_url(host, port, dataset.name)}  (Ctrl-C to stop)", flush=True)
    if wait:
        session.wait(-1)
    return session
