"""The balance stage: resample the train split so that rare expressions are not drowned out.

Only the train rows of the dataset manifest are read, and only train rows are written;
val and test stay as the split stage left them. Methods (``balance.method``):

* ``none``: the real train rows unchanged (train with ``class_weights.json`` instead);
* ``random_over`` / ``random_under``: imbalanced-learn's random duplication / removal;
* ``smote``, ``borderline_smote``, ``adasyn``: new faces interpolated between a real face
  and one of its ``k_neighbors`` nearest same-class faces, the neighbours searched among
  the pixels or in a PCA space (``feature_space``; PCA faces are mapped back to pixels);
* ``augment``: flipped / rotated / zoomed / shifted copies of real faces of the class,
  parents taken round-robin from a seeded shuffle (:mod:`ferdata.augment`).

``sampling_strategy`` sets each class's target: ``auto`` (oversamplers: every class up to
the largest; ``random_under``: every class down to the smallest), a share of the largest
class (``0.5``, or ``{ratio: 0.5}``: each smaller class up to half the largest; for
``random_under``, each class down to at most the smallest divided by the share), or
``{class name: count}`` for the classes to change. ADASYN and borderline SMOTE decide themselves how many faces each
class receives (near its target, fewer where few faces lie near another class); the
counts reported are the ones made. ``augment_after`` transforms every new row an
oversampler made, so that no two rows are the same face in the same pose.

New rows have ``source`` = ``synthetic``, ``origin`` = what made them (the method, or
``augment`` for a transformed copy of a real face), ``sample_id`` =
``<origin>-<class>-<n>`` numbered from 1 within each class, ``parent_id`` = the real face a
copy was made from (``subject`` and ``fold`` copied from it, so subject-disjoint folds
stay leak-free), ``transform`` = the JSON of the transform applied, ``align_status`` =
``synthetic``. Interpolated faces have no single parent.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Collection, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from imblearn.over_sampling import ADASYN, SMOTE, BorderlineSMOTE, RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler
from matplotlib.figure import Figure
from rich.table import Table
from sklearn.decomposition import PCA
from sklearn.utils.class_weight import compute_class_weight

from ferdata import dedup
from ferdata.augment import AugmentParams, Transform, augment_images, online_config
from ferdata.balance_memory import GB, ResampleSize, available_bytes, memory_advice
from ferdata.export import write_class_pngs
from ferdata.files import replace_dir, write_json
from ferdata.manifest import (
    BALANCE_FIELDS, BALANCED_SCHEMA, DATASET_SCHEMA, IMAGE_SIZE, array_to_pixels, check_labels, pixels_to_array,
    read_table, write_table,
)
from ferdata.params import ParamsError
from ferdata.progress import duration, note
from ferdata.taxonomy import CLASSES_7

INTERPOLATING = ("smote", "borderline_smote", "adasyn")
OVERSAMPLING = ("random_over", *INTERPOLATING, "augment")
METHODS = ("none", "random_under", *OVERSAMPLING)
FEATURE_SPACES = ("pixels", "pca")
SYNTHETIC_SOURCE = "synthetic"
M_NEIGHBORS = 10  # borderline SMOTE: neighbours (of any class) that decide if a face is in danger
_WHERE = "params.yaml [balance]"


@dataclass
class BalanceParams:
    """The ``balance:`` section of params.yaml."""

    seed: int = 42
    method: str = "none"  # one of METHODS
    sampling_strategy: str | float | dict = "auto"  # auto | 0.5 or {ratio: 0.5} | {class name: count}
    k_neighbors: int = 5  # smote, borderline_smote, adasyn
    feature_space: str = "pixels"  # pixels | pca: where smote / adasyn search neighbours
    pca_components: int = 100  # with feature_space pca
    augment: AugmentParams = field(default_factory=AugmentParams)
    augment_after: bool = False  # transform each new row an oversampler made
    max_memory_gb: float | None = None  # most memory resampling may take; None: what is free when it starts
    class_weight_power: float = 0.75  # class_weights.json: inverse frequency to this power (1: balanced; 0: all 1)

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentParams.from_dict(self.augment)
        if self.method not in METHODS:
            raise ParamsError(f"{_WHERE}.method: one of {list(METHODS)}, not {self.method!r}")
        if self.feature_space not in FEATURE_SPACES:
            raise ParamsError(f"{_WHERE}.feature_space: one of {list(FEATURE_SPACES)}, not {self.feature_space!r}")
        if isinstance(self.k_neighbors, bool) or not isinstance(self.k_neighbors, int) or self.k_neighbors < 1:
            raise ParamsError(f"{_WHERE}.k_neighbors: an integer >= 1, not {self.k_neighbors!r}")
        if isinstance(self.pca_components, bool) or not isinstance(self.pca_components, int) \
                or self.pca_components < 1:
            raise ParamsError(f"{_WHERE}.pca_components: an integer >= 1, not {self.pca_components!r}")
        if self.augment_after and self.method not in ("random_over", *INTERPOLATING):
            raise ParamsError(f"{_WHERE}.augment_after: transforms the rows an oversampler makes; "
                              f"use it with random_over, smote, borderline_smote or adasyn, not {self.method!r}")
        self.sampling_strategy = _checked_strategy(self.sampling_strategy)
        if self.max_memory_gb is not None and (isinstance(self.max_memory_gb, bool)
                                               or not isinstance(self.max_memory_gb, (int, float))
                                               or self.max_memory_gb <= 0):
            raise ParamsError(f"{_WHERE}.max_memory_gb: a number of GB > 0, or null, not {self.max_memory_gb!r}")
        if isinstance(self.class_weight_power, bool) or not isinstance(self.class_weight_power, (int, float)) \
                or not 0 <= self.class_weight_power <= 1:
            raise ParamsError(f"{_WHERE}.class_weight_power: a number from 0 to 1, not {self.class_weight_power!r}")


def _checked_strategy(strategy: object) -> str | float | dict[str, int]:
    """``sampling_strategy`` in one of its three forms, or a ParamsError saying which exist."""
    where = f"{_WHERE}.sampling_strategy"
    if strategy == "auto":
        return "auto"
    if isinstance(strategy, (int, float)) and not isinstance(strategy, bool):
        if not 0 < strategy <= 1:
            raise ParamsError(f"{where}: a share of the largest class must lie in (0, 1], not {strategy!r}")
        return float(strategy)
    if isinstance(strategy, dict) and "ratio" in strategy:
        if len(strategy) > 1:
            raise ParamsError(f"{where}: either {{ratio: share}} or {{class name: count}}, not both: {strategy}")
        return _checked_strategy(strategy["ratio"])
    if isinstance(strategy, dict):
        bad = {k: v for k, v in strategy.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0}
        if bad:
            raise ParamsError(f"{where}: target counts must be integers >= 0, not {bad}")
        return dict(strategy)
    raise ParamsError(f"{where}: 'auto', a share of the largest class such as 0.5, "
                      f"or a mapping {{class name: count}}; not {strategy!r}")


def class_targets(params: BalanceParams, counts: dict[str, int]) -> dict[str, int]:
    """Each class's count after balancing, from the real train ``counts``; ParamsError when a
    target is impossible (unknown class, oversampling below the current count, and so on)."""
    where = f"{_WHERE}.sampling_strategy"
    present = [n for n in counts.values() if n > 0]
    under = params.method == "random_under"
    strategy = params.sampling_strategy
    unknown = sorted(set(strategy) - set(counts)) if isinstance(strategy, dict) else []
    if unknown:
        raise ParamsError(f"{where}: unknown class names {unknown}; classes: {list(counts)}")
    if params.method == "none":
        return dict(counts)
    if strategy == "auto":
        goal = min(present) if under else max(present)
        return {c: goal if n > 0 else 0 for c, n in counts.items()}
    if isinstance(strategy, float):
        if under:
            cap = round(min(present) / strategy)
            return {c: min(n, cap) for c, n in counts.items()}
        floor = round(strategy * max(present))
        return {c: max(n, floor) if n > 0 else 0 for c, n in counts.items()}
    for name, target in strategy.items():
        n = counts[name]
        if under and target > n:
            raise ParamsError(f"{where}: target {target} for {name} is above its {n} real train faces; "
                              f"random_under only removes faces")
        if not under and target < n:
            raise ParamsError(f"{where}: target {target} for {name} is below its {n} real train faces; "
                              f"{params.method} only adds faces (use random_under to remove)")
        if not under and target > 0 and n == 0:
            raise ParamsError(f"{where}: target {target} for {name}, which has no real train faces to start from")
    return {c: strategy.get(c, n) for c, n in counts.items()}


def check_feasible(params: BalanceParams, counts: dict[str, int], targets: dict[str, int]) -> None:
    """Refuse neighbour settings the train split cannot support, before any work."""
    total = sum(counts.values())
    if params.method not in INTERPOLATING:
        return
    k = params.k_neighbors
    for name, n in counts.items():
        if targets[name] > n and n <= k:
            raise ParamsError(
                f"{_WHERE}.k_neighbors: {params.method} makes each new {name} face from one of a face's "
                f"{k} nearest {name} faces, so it needs more than {k} real {name} faces; {name} has {n}. "
                f"Lower k_neighbors, or leave {name} out of sampling_strategy.")
    if params.method == "borderline_smote" and total <= M_NEIGHBORS:
        raise ParamsError(f"{_WHERE}.method: borderline_smote compares each face with its {M_NEIGHBORS} "
                          f"nearest train faces; the train split has only {total}")
    if params.feature_space == "pca" and params.pca_components > min(total, IMAGE_SIZE * IMAGE_SIZE):
        raise ParamsError(f"{_WHERE}.pca_components: at most min(train faces, pixels) = "
                          f"{min(total, IMAGE_SIZE * IMAGE_SIZE)}, not {params.pca_components}")


def check_memory(params: BalanceParams, real: int, new: int) -> None:
    """Refuse, before any work, a resampling that would not fit in memory, naming the settings
    that would (:mod:`ferdata.balance_memory`)."""
    size = ResampleSize(real, new, params.pca_components if params.feature_space == "pca" else 0)
    limit = int(params.max_memory_gb * GB) if params.max_memory_gb is not None else available_bytes()
    advice = memory_advice(params.method, params.method in INTERPOLATING, size, limit, params.pca_components)
    if advice is not None:
        raise ParamsError(f"{_WHERE}: {advice}")


@dataclass
class Generated:
    """What resampling did: the real rows kept, and the new rows (empty for none / random_under)."""

    keep: np.ndarray  # indices of the real train rows kept
    labels: np.ndarray  # label index of each new row
    images: np.ndarray  # (M, 48, 48) uint8
    parents: np.ndarray  # index of the real row each new row copies, -1 for interpolations
    transforms: list[Transform | None]
    origin: str


def _round_robin_parents(y: np.ndarray, extra: dict[int, int], seed: int) -> np.ndarray:
    """``extra[k]`` parents of class k: a seeded shuffle of the class, repeated as needed."""
    parts = [np.resize(np.random.default_rng([seed, k, 0]).permutation(np.flatnonzero(y == k)), n)
             for k, n in sorted(extra.items())]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def _augment_by_class(images: np.ndarray, labels: np.ndarray, params: BalanceParams
                      ) -> tuple[np.ndarray, list[Transform | None]]:
    """Transform every image; each class draws from its own seeded stream."""
    out = np.empty_like(images)
    transforms: list[Transform | None] = [None] * len(images)
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        rng = np.random.default_rng([params.seed, int(k), 1])
        out[rows], drawn = augment_images(images[rows], params.augment, rng)
        for row, t in zip(rows, drawn):
            transforms[row] = t
    return out, transforms


def _interpolator(params: BalanceParams, targets: dict[int, int]):
    """The imbalanced-learn oversampler that interpolates between neighbours."""
    common = dict(sampling_strategy=targets, random_state=params.seed)
    if params.method == "smote":
        return SMOTE(k_neighbors=params.k_neighbors, **common)
    if params.method == "borderline_smote":
        return BorderlineSMOTE(k_neighbors=params.k_neighbors, m_neighbors=M_NEIGHBORS, **common)
    return ADASYN(n_neighbors=params.k_neighbors, **common)


def _interpolate(params: BalanceParams, images: np.ndarray, y: np.ndarray,
                 targets: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """New faces (uint8) and their labels from SMOTE / borderline SMOTE / ADASYN."""
    n = len(y)
    features = images.reshape(n, -1).astype(np.float32)
    projection = None
    if params.feature_space == "pca":
        projection = PCA(n_components=params.pca_components, svd_solver="randomized", random_state=params.seed)
        features = projection.fit_transform(features).astype(np.float32, copy=False)
    try:
        resampled, y_resampled = _interpolator(params, targets).fit_resample(features, y)
    except (RuntimeError, ValueError) as exc:
        if params.method != "adasyn":
            raise
        # ADASYN weights each face by the other-class faces among its neighbours: none, nothing made
        raise ValueError(
            f"balance method adasyn: {exc} A class to oversample has no face of another class among "
            f"its faces' {params.k_neighbors} nearest neighbours, so ADASYN has nothing to weight by "
            "(the classes are separable here). Use smote or borderline_smote, or a larger k_neighbors.") from exc
    del features
    new = resampled[n:]
    del resampled
    if projection is not None:
        new = projection.inverse_transform(new)
    faces = np.clip(np.rint(new), 0, 255).astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    return faces, y_resampled[n:].astype(np.int64)


def resample(params: BalanceParams, images: np.ndarray, y: np.ndarray, targets: dict[int, int]) -> Generated:
    """Apply ``params.method`` to the real train faces; ``targets`` maps label index -> count."""
    n = len(y)
    everyone = np.arange(n)
    counts = np.bincount(y, minlength=max(targets, default=-1) + 1)
    change = {k: t for k, t in targets.items() if t != counts[k]}
    none = Generated(everyone, np.zeros(0, np.int64), np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8),
                     np.zeros(0, np.int64), [], params.method)
    if params.method == "none" or not change:
        return none
    if params.method == "random_under":
        sampler = RandomUnderSampler(sampling_strategy=change, random_state=params.seed)
        sampler.fit_resample(everyone[:, None], y)
        kept = np.sort(sampler.sample_indices_)
        return Generated(kept, none.labels, none.images, none.parents, [], "random_under")
    if params.method in INTERPOLATING:
        new_images, labels = _interpolate(params, images, y, change)
        parents = np.full(len(labels), -1, np.int64)
    else:
        if params.method == "random_over":
            index, _ = RandomOverSampler(sampling_strategy=change, random_state=params.seed).fit_resample(
                everyone[:, None], y)
            parents = index[n:, 0].astype(np.int64)
        else:
            parents = _round_robin_parents(y, {k: t - counts[k] for k, t in change.items()}, params.seed)
        new_images, labels = images[parents], y[parents].astype(np.int64)
    transforms: list[Transform | None] = [None] * len(labels)
    transformed = params.method == "augment" or params.augment_after
    if transformed:
        new_images, transforms = _augment_by_class(new_images, labels, params)
    # a transformed copy of a real face is an augmentation, whichever method picked its parent
    origin = "augment" if transformed and params.method not in INTERPOLATING else params.method
    return Generated(everyone, labels, new_images, parents, transforms, origin)


def class_weights(counts: dict[str, int], classes: Sequence[str], power: float = 1.0) -> dict:
    """class_weights.json: sklearn's ``balanced`` weights, n_samples / (n_classes * count),
    raised to ``power`` and rescaled so that the average train face still weighs 1."""
    present = [k for k, c in enumerate(classes) if counts[c] > 0]
    sizes = np.array([counts[classes[k]] for k in present])
    weights = compute_class_weight("balanced", classes=np.array(present), y=np.repeat(present, sizes))
    if power != 1:  # power 1 keeps sklearn's weights exactly, without a rescale's rounding
        weights = weights ** power
        weights *= sizes.sum() / float(np.dot(sizes, weights))
    return {
        "computed_on": "the balanced train split (this stage's manifest.parquet); "
                       "with method none, the real train counts",
        "formula": "(n_samples / (n_classes * count)) ** power, rescaled to a mean of 1 per train face; "
                   "power 1: sklearn compute_class_weight('balanced')",
        "power": power,
        "counts": dict(counts),
        "absent": [c for c in classes if counts[c] == 0],
        "by_index": {str(k): float(w) for k, w in zip(present, weights)},
        "by_name": {classes[k]: float(w) for k, w in zip(present, weights)},
    }


def plot_counts(before: dict[str, int], after: dict[str, int], title: str, path: Path) -> None:
    """A bar chart of train faces per class before and after balancing (PNG, no pyplot state)."""
    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.subplots()
    x = np.arange(len(before))
    ax.bar(x - 0.2, list(before.values()), 0.4, label="real train")
    ax.bar(x + 0.2, list(after.values()), 0.4, label="balanced")
    ax.set_xticks(x, list(before))
    ax.set_ylabel("faces")
    ax.set_ylim(0, 1.2 * max([*before.values(), *after.values(), 1]))  # room for the legend
    ax.set_title(title)
    ax.legend(loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})


@dataclass
class BalanceResult:
    """The stage's outcome, for the summary the CLI prints."""

    classes: tuple[str, ...]
    method: str
    excluded: dict[str, int]  # train faces left out (label issues) per class
    before: dict[str, int]  # real train faces per class, after the exclusions
    targets: dict[str, int]  # the counts sampling_strategy asked for
    after: dict[str, int]  # balanced train faces per class (ADASYN, borderline SMOTE: may differ from targets)
    made: dict[str, int]  # origin -> new rows
    weights: dict[str, float]  # class -> weight (class_weights.json by_name)
    out_dir: Path
    seconds: dict[str, float]  # read, resample, write

    def summary(self) -> Table:
        """Per class: real train faces, the target, balanced faces, the change and the class weight."""
        made = ", ".join(f"{n} {origin}" for origin, n in self.made.items()) or "no new rows"
        table = Table(title=f"balance ({self.method}): {sum(self.before.values())} -> "
                            f"{sum(self.after.values())} train faces ({made}) in {self.out_dir}")
        excluded = any(self.excluded.values())
        for col in ("class", *(["excluded"] if excluded else []), "real train", "target", "balanced", "change",
                    "weight"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for c in self.classes:
            weight = self.weights.get(c)
            table.add_row(c, *([str(self.excluded[c])] if excluded else []), str(self.before[c]),
                          str(self.targets[c]), str(self.after[c]), f"{self.after[c] - self.before[c]:+d}",
                          "-" if weight is None else f"{weight:.3f}")
        return table


def _check_input(table: pa.Table, path: Path, classes: Sequence[str]) -> None:
    """Refuse a manifest this stage would misread."""
    missing = [name for name in DATASET_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected the dataset manifest of the split stage")
    train = table.filter(pc.equal(table["split"], "train"))
    if train.num_rows == 0:
        raise ValueError(f"{path}: no train rows to balance")
    check_labels(train, classes, path)
    origins = sorted(set(train["origin"].to_pylist()) - {"real"})
    if origins:
        raise ValueError(f"{path}: train rows with origin {origins}; balance starts from real faces only")


def read_train(dataset_dir: Path, classes: Sequence[str]) -> pa.Table:
    """The dataset manifest's train rows (only those are read), in DATASET_SCHEMA, sorted by
    sample id."""
    path = Path(dataset_dir) / "manifest.parquet"
    table = read_table(path, filters=[("split", "==", "train")])
    _check_input(table, path, classes)
    return table.select(DATASET_SCHEMA.names).cast(DATASET_SCHEMA).sort_by("sample_id")


def _real_rows(train: pa.Table, keep: np.ndarray, params: BalanceParams) -> pa.Table:
    """The kept real rows with the balance columns (method, seed; no parent, no transform)."""
    rows = train.take(pa.array(keep, pa.int64()))
    paths = [f"train/{lab}/{sid}.png" for lab, sid in zip(rows["label"].to_pylist(), rows["sample_id"].to_pylist())]
    rows = rows.set_column(rows.schema.get_field_index("path"), DATASET_SCHEMA.field("path"), pa.array(paths))
    n = rows.num_rows
    values = {"method": [params.method] * n, "seed": [params.seed] * n, "parent_id": [None] * n,
              "transform": [None] * n}
    for f in BALANCE_FIELDS:
        rows = rows.append_column(f, pa.array(values[f.name], f.type))
    return rows


def _new_rows(gen: Generated, train: pa.Table, classes: Sequence[str], params: BalanceParams) -> pa.Table:
    """The new rows in BALANCED_SCHEMA: ids, paths, hashes, parent and transform."""
    ids = train["sample_id"].to_pylist()
    subjects, folds = train["subject"].to_pylist(), train["fold"].to_pylist()
    content, phashes = dedup.pixel_hashes(gen.images), dedup.hash_hex(dedup.phash(gen.images))
    numbers: Counter[str] = Counter()
    rows = []
    for i, (k, parent, t) in enumerate(zip(gen.labels.tolist(), gen.parents.tolist(), gen.transforms)):
        label = classes[k]
        numbers[label] += 1
        sid = f"{gen.origin}-{label}-{numbers[label]:06d}"
        path = f"train/{label}/{sid}.png"
        rows.append(dict(
            sample_id=sid, source=SYNTHETIC_SOURCE, label=label, label_index=k, native_label=label,
            split="train", subject=subjects[parent] if parent >= 0 else None, sequence=None, frame=None,
            source_file=path, source_line=None, pixels_row=None, width=IMAGE_SIZE, height=IMAGE_SIZE,
            content_hash=content[i], align_status="synthetic", faces_detected=None, eye_angle=None,
            interocular=None, fit_residual=None, fit_disagreement=None,
            fold=folds[parent] if parent >= 0 else None, dup_group=None,
            phash=phashes[i], path=path, origin=gen.origin, method=params.method, seed=params.seed,
            parent_id=ids[parent] if parent >= 0 else None, transform=t.to_json() if t is not None else None,
        ))
    pixels_at = BALANCED_SCHEMA.get_field_index("pixels")
    table = pa.Table.from_pylist(rows, schema=BALANCED_SCHEMA.remove(pixels_at))
    return table.add_column(pixels_at, BALANCED_SCHEMA.field("pixels"), array_to_pixels(gen.images))


def _write_output(out_dir: Path, manifest: pa.Table, images: np.ndarray, classes: Sequence[str],
                  reports: dict[str, dict], before: dict[str, int], after: dict[str, int], title: str) -> None:
    """Assemble the balanced folder in a temporary folder, then rename it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        for name in classes:
            (tmp / "train" / name).mkdir(parents=True)
        write_class_pngs(tmp, manifest["path"].to_pylist(), images, "balance")
        write_table(manifest, tmp / "manifest.parquet")
        for name, report in reports.items():
            write_json(tmp / name, report)
        plot_counts(before, after, title, tmp / "counts.png")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def run_balance(params: BalanceParams, dataset_dir: Path, out_dir: Path,
                taxonomy_classes: Sequence[str] = CLASSES_7, exclude: Collection[str] = frozenset()
                ) -> BalanceResult:
    """Read ``dataset_dir/manifest.parquet``'s train rows; write the balanced folder ``out_dir``.

    ``out_dir`` receives manifest.parquet (BALANCED_SCHEMA, train rows only: the real ones
    kept and the new ones), ``train/<class>/<sample_id>.png`` (every class folder),
    class_weights.json, augment.json, balance.json and counts.png; it is replaced as a whole.
    ``exclude`` holds sample ids to leave out of training (the label-issues stage's flags):
    those train rows are neither written nor used as parents or neighbours. ``dataset_dir``
    is only read.
    """
    classes = tuple(taxonomy_classes)
    out_dir = Path(out_dir)
    clock = time.perf_counter()
    train = read_train(dataset_dir, classes)
    left_out = pc.is_in(train["sample_id"], pa.array(sorted(exclude), pa.string()))
    excluded = Counter(train.filter(left_out)["label"].to_pylist())
    train = train.filter(pc.invert(left_out))
    if train.num_rows == 0:
        raise ValueError(f"{dataset_dir}: every train row is excluded; nothing left to balance")
    y = train["label_index"].to_numpy().astype(np.int64)
    before = {c: int(n) for c, n in zip(classes, np.bincount(y, minlength=len(classes)))}
    targets = class_targets(params, before)
    check_feasible(params, before, targets)
    check_memory(params, train.num_rows, sum(max(targets[c] - before[c], 0) for c in classes))
    images = pixels_to_array(train["pixels"])
    seconds = {"read": time.perf_counter() - clock}
    note(f"balance: {len(y):,} train faces read; {params.method} towards {sum(targets.values()):,}")

    clock = time.perf_counter()
    gen = resample(params, images, y, {classes.index(c): t for c, t in targets.items() if before[c] > 0})
    seconds["resample"] = time.perf_counter() - clock
    note(f"balance: {params.method} made {len(gen.labels):,} faces, kept {len(gen.keep):,}  "
         f"{duration(seconds['resample'])}")

    clock = time.perf_counter()
    manifest = pa.concat_tables([_real_rows(train, gen.keep, params), _new_rows(gen, train, classes, params)])
    after_y = np.concatenate([y[gen.keep], gen.labels])
    after = {c: int(n) for c, n in zip(classes, np.bincount(after_y, minlength=len(classes)))}
    made = {gen.origin: len(gen.labels)} if len(gen.labels) else {}
    weights = class_weights(after, classes, params.class_weight_power)
    report = {
        "classes": list(classes),
        "method": params.method,
        "params": asdict(params),
        "excluded": {c: excluded[c] for c in classes},
        "targets": targets,
        "before": before,
        "after": after,
        "added": {c: max(after[c] - before[c], 0) for c in classes},
        "removed": {c: max(before[c] - after[c], 0) for c in classes},
        "off_target": {c: after[c] - targets[c] for c in classes if after[c] != targets[c]},
        "rows_by_origin": {"real": int(gen.keep.size), **made},
    }
    title = f"train faces per class, {params.method}"
    _write_output(out_dir, manifest, np.concatenate([images[gen.keep], gen.images]), classes,
                  {"balance.json": report, "class_weights.json": weights,
                   "augment.json": online_config(params.augment)}, before, after, title)
    seconds["write"] = time.perf_counter() - clock
    return BalanceResult(classes=classes, method=params.method, excluded={c: excluded[c] for c in classes},
                         before=before, targets=targets, after=after, made=made, weights=weights["by_name"],
                         out_dir=out_dir, seconds=seconds)
