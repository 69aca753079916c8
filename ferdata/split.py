"""The split stage: final train / val / test, subject-disjoint folds, dedup and leakage,
then the class-directory dataset.

FER2013 (any row with an official ``split``) keeps its split. Rows without one (CK+,
JAFFE) are split by subject: whole subjects go to one side, the number of subjects per
side follows ``subject_fractions``, and subjects are placed (largest first, then improved
by swaps) so that each side's per-class counts come close to its share. The same
assignment with equal shares gives the subject-disjoint ``fold`` column. Dedup only ever
drops rows, so no subject changes side.
"""

from __future__ import annotations

import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Group
from rich.table import Table

from ferdata import dedup
from ferdata.executor import Executor, using
from ferdata.export import write_dataset
from ferdata.manifest import ALIGNED_SCHEMA, DATASET_SCHEMA, Reject, check_labels
from ferdata.params import ParamsError
from ferdata.progress import progress_bar
from ferdata.shards import FaceFile, Shards
from ferdata.taxonomy import CLASSES_7

SPLITS = dedup.SPLIT_ORDER
#: The aligned manifest's columns the decisions read for every row; the rest are read a partition at a time.
DECISION_COLUMNS = ["sample_id", "source", "label", "label_index", "split", "subject", "sequence", "content_hash"]
AUXILIARY_MODES = ("split", "train")


@dataclass
class SplitParams:
    """The ``split:`` section of params.yaml."""

    seed: int = 42
    subject_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])  # train, val, test
    auxiliary_mode: dict[str, str] = field(default_factory=lambda: {"ckplus": "split", "jaffe": "split"})
    folds: int = 10
    phash_threshold: int = 4  # Hamming distance (of 64 bits) for near-duplicates
    near_max_diff: float = 2.0  # a pHash pair is a copy if mean |pixel difference| is at most this
    blank_std: float = 2.0  # images whose pixel std is below this are dropped as blank
    leak_policy: str = "keep_eval"  # keep_eval | keep_train | drop_all | keep_all
    within_split_duplicates: str = "keep_one"  # keep_one | keep_all
    label_conflicts: str = "drop"  # drop | keep: a duplicate group whose copies carry different labels

    def __post_init__(self) -> None:
        where = "params.yaml [split]"
        fractions = self.subject_fractions
        if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
            raise ParamsError(f"{where}.subject_fractions: three shares (train, val, test) >= 0 "
                              f"summing to 1, not {fractions}")
        bad_modes = {s: m for s, m in self.auxiliary_mode.items() if m not in AUXILIARY_MODES}
        if bad_modes:
            raise ParamsError(f"{where}.auxiliary_mode: each mode is one of {AUXILIARY_MODES}, not {bad_modes}")
        if self.folds < 2:
            raise ParamsError(f"{where}.folds: at least 2, not {self.folds}")
        if not 0 <= self.phash_threshold <= dedup.MAX_PHASH_THRESHOLD:
            raise ParamsError(f"{where}.phash_threshold: within 0..{dedup.MAX_PHASH_THRESHOLD}, "
                              f"not {self.phash_threshold}")
        if self.near_max_diff < 0:
            raise ParamsError(f"{where}.near_max_diff: >= 0, not {self.near_max_diff}")
        if self.blank_std < 0:
            raise ParamsError(f"{where}.blank_std: >= 0, not {self.blank_std}")
        if self.leak_policy not in dedup.LEAK_POLICIES:
            raise ParamsError(f"{where}.leak_policy: one of {sorted(dedup.LEAK_POLICIES)}, "
                              f"not {self.leak_policy!r}")
        if self.within_split_duplicates not in dedup.WITHIN_SPLIT_POLICIES:
            raise ParamsError(f"{where}.within_split_duplicates: one of {dedup.WITHIN_SPLIT_POLICIES}, "
                              f"not {self.within_split_duplicates!r}")
        if self.label_conflicts not in dedup.LABEL_CONFLICT_POLICIES:
            raise ParamsError(f"{where}.label_conflicts: one of {dedup.LABEL_CONFLICT_POLICIES}, "
                              f"not {self.label_conflicts!r}")


@dataclass
class SplitResult:
    """The stage's outcome, for the summary the CLI prints."""

    classes: tuple[str, ...]
    counts: dict[str, dict[str, int]]  # split -> class -> kept samples
    subjects: dict[str, dict[str, int]]  # source -> split -> subjects
    groups: int
    leaks_resolved: int
    leaks_kept: int  # leak_policy keep_all: groups left on several sides
    dropped: dict[str, list[str]]  # reason -> sample ids
    dropped_by_class: dict[str, dict[str, dict[str, int]]]  # split -> class -> reason -> samples
    out_dir: Path

    @property
    def kept(self) -> int:
        return sum(sum(c.values()) for c in self.counts.values())

    def summary(self) -> Group:
        """One screen: kept samples per split x class, subjects per side, what dedup dropped."""
        table = Table(title=f"split: {self.kept} samples in {self.out_dir}")
        for col in ("split", "total", *self.classes):
            table.add_column(col, justify="left" if col == "split" else "right")
        for split in SPLITS:
            row = self.counts[split]
            table.add_row(split, str(sum(row.values())), *(str(row[c]) for c in self.classes))
        lines = [table]
        for source, per_split in self.subjects.items():
            lines.append(f"{source} subjects: " + ", ".join(f"{s} {per_split[s]}" for s in SPLITS))
        dropped = ", ".join(f"{reason} {len(ids)}" for reason, ids in sorted(self.dropped.items())) or "none"
        kept = f", leaks kept on every side {self.leaks_kept}" if self.leaks_kept else ""
        lines.append(f"duplicate groups {self.groups}, leaks resolved {self.leaks_resolved}{kept}, "
                     f"dropped: {dropped} (ids in dedup.json, dropped.parquet)")
        train_drops = self.dropped_by_class["train"]
        if train_drops:
            shares = []
            for c in self.classes:
                gone = sum(train_drops.get(c, {}).values())
                shares.append(f"{c} {gone} ({gone / max(gone + self.counts['train'][c], 1):.1%})")
            lines.append("train faces dropped per class: " + ", ".join(shares))
        return Group(*lines)


def group_quotas(n: int, fractions: Sequence[float]) -> np.ndarray:
    """How many of ``n`` groups each bin gets: largest remainders, and at least one in every
    bin with a positive share while another bin can spare one."""
    raw = np.asarray(fractions, dtype=np.float64) * n
    quotas = np.floor(raw).astype(np.int64)
    by_remainder = np.argsort(-(raw - quotas), kind="stable")
    quotas[by_remainder[: n - quotas.sum()]] += 1
    for b in np.flatnonzero(np.asarray(fractions) > 0):
        if quotas[b] == 0 and quotas.max() > 1:
            quotas[np.argmax(quotas)] -= 1
            quotas[b] += 1
    return quotas


def stratified_assignment(class_counts: np.ndarray, fractions: Sequence[float],
                          rng: np.random.Generator, max_passes: int = 20) -> np.ndarray:
    """A bin per group (a row of per-class sample counts), each bin holding its quota of groups.

    The aim: each bin's per-class counts close to its share of each class's total (squared
    gaps, classes weighted equally). Largest groups first (ties in a seeded random order),
    each goes to the bin with room where it most reduces the gaps; then swaps of two groups
    between bins that reduce them further, until none does.
    """
    n_groups = len(class_counts)
    counts = class_counts.astype(np.float64)
    room = group_quotas(n_groups, fractions)
    totals = counts.sum(axis=0)
    weight = np.divide(1.0, totals ** 2, out=np.zeros_like(totals), where=totals > 0)
    gap = np.outer(np.asarray(fractions, dtype=np.float64), totals)  # target minus assigned
    order = rng.permutation(n_groups)
    order = order[np.argsort(-counts.sum(axis=1)[order], kind="stable")]
    bins = np.empty(n_groups, dtype=np.int64)
    for g in order:
        gain = (counts[g] * (2 * gap - counts[g]) * weight).sum(axis=1)
        gain[room == 0] = -np.inf
        b = int(np.argmax(gain))
        bins[g], room[b] = b, room[b] - 1
        gap[b] -= counts[g]
    for _ in range(max_passes):
        swapped = False
        # groups with the same bin and counts are interchangeable: one stands for all
        kinds = np.unique(np.column_stack([bins, class_counts]), axis=0, return_index=True)[1]
        for a in kinds:
            # swapping a with partner b moves d = counts[a] - counts[b] from a's bin to b's
            d = counts[a] - counts[kinds]
            change = (2 * d * (d + gap[bins[a]] - gap[bins[kinds]]) * weight).sum(axis=1)
            change[bins[kinds] == bins[a]] = 0.0
            k = int(np.argmin(change))
            if change[k] < -1e-12:
                b = kinds[k]
                gap[bins[a]] += d[k]
                gap[bins[b]] -= d[k]
                bins[a], bins[b] = bins[b], bins[a]
                swapped = True
        if not swapped:
            break
    return bins


def _rng(seed: int, source: str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(source.encode()), stream])


@dataclass
class Assignment:
    """Final split and fold per row, and how each source was split."""

    split: list[str]
    fold: list[int | None]
    modes: dict[str, str]  # source -> official | split | train
    subjects: dict[str, dict[str, list[str]]]  # source -> split -> subjects
    folds: dict[str, dict[str, list[str]]]  # source -> fold -> subjects


@dataclass
class Decisions:
    """The per-row values the split decisions read, as columns. The repeating strings
    (source, label, split, subject, sequence) are one Python object per distinct value, so a
    row costs a few list slots, not a dict of its own strings."""

    sample_id: list[str]
    source: list[str]
    label: list[str]
    label_index: np.ndarray
    split: list[str | None]
    subject: list[str | None]
    sequence: list[str | None]

    @classmethod
    def of(cls, table: pa.Table) -> "Decisions":
        """The columns of ``table`` (aligned-manifest columns), row for row."""
        return cls(table["sample_id"].to_pylist(), _shared(table["source"]), _shared(table["label"]),
                   table["label_index"].to_numpy(), _shared(table["split"]), _shared(table["subject"]),
                   _shared(table["sequence"]))

    def __len__(self) -> int:
        return len(self.sample_id)

    def take(self, rows: Sequence[int]) -> "Decisions":
        """The rows at ``rows``, in that order."""
        return Decisions(*([column[i] for i in rows] for column in (self.sample_id, self.source, self.label)),
                         self.label_index[np.asarray(rows, dtype=np.int64)],
                         *([column[i] for i in rows] for column in (self.split, self.subject, self.sequence)))

    def subject_key(self, i: int) -> str:
        """The group row ``i`` is split with: its subject, else the sample itself."""
        subject = self.subject[i]
        return subject if subject is not None else self.sample_id[i]


def _shared(column: pa.ChunkedArray) -> list:
    """A string column as a list in which equal values are one object (None for nulls)."""
    encoded = column.combine_chunks().dictionary_encode()
    values = [*encoded.dictionary.to_pylist(), None]
    return [values[k] for k in pc.fill_null(encoded.indices, -1).to_numpy()]


def assign_splits(rows: Decisions, params: SplitParams, n_classes: int) -> Assignment:
    """Keep official splits; split the other rows by subject, per source; fold them too.

    Rows with neither a split nor a subject are each their own group.
    """
    split: list[str | None] = list(rows.split)
    fold: list[int | None] = [None] * len(rows)
    result = Assignment(split, fold, {}, {}, {})
    for source in sorted(set(rows.source)):
        members = [i for i, (s, official) in enumerate(zip(rows.source, rows.split))
                   if s == source and official is None]
        if not members:
            result.modes[source] = "official"
            continue
        mode = params.auxiliary_mode.get(source, "split")
        result.modes[source] = mode
        names, group = np.unique(np.asarray([rows.subject_key(i) for i in members], dtype=str),
                                 return_inverse=True)
        counts = np.zeros((len(names), n_classes), dtype=np.int64)
        np.add.at(counts, (group, rows.label_index[members]), 1)
        if mode == "train":
            side = np.zeros(len(names), dtype=np.int64)
        else:
            side = stratified_assignment(counts, params.subject_fractions, _rng(params.seed, source, 0))
        folds = stratified_assignment(counts, [1 / params.folds] * params.folds, _rng(params.seed, source, 1))
        for i, g in zip(members, group):
            split[i] = SPLITS[side[g]]
            fold[i] = int(folds[g])
        result.subjects[source] = {s: [str(n) for n, b in zip(names, side) if SPLITS[b] == s] for s in SPLITS}
        result.folds[source] = {str(k): [str(n) for n, f in zip(names, folds) if f == k]
                                for k in range(params.folds)}
    return result


def _locations(shards: Shards, rows: np.ndarray) -> list[str]:
    """``source_file:source_line`` (or the file alone) of some stored rows."""
    picked = shards.take(rows, ["source_file", "source_line"]).to_pylist()
    return [f"{r['source_file']}:{r['source_line']}" if r["source_line"] is not None else r["source_file"]
            for r in picked]


def _check_input(table: pa.Table, path: Path, classes: Sequence[str]) -> None:
    """Refuse input that would make the dataset wrong rather than incomplete (``table``: the
    aligned manifest's decision columns)."""
    ids = table["sample_id"]
    counts = pc.value_counts(ids)
    repeated = sorted(counts.field("values").filter(pc.greater(counts.field("counts"), 1)).to_pylist())
    if repeated:
        raise ValueError(f"{path}: sample ids occur more than once: {repeated[:10]}")
    unusable = ids.filter(pc.or_(pc.or_(pc.equal(ids, ""), pc.starts_with(ids, ".")),
                                 pc.match_substring_regex(ids, r"[/\\]"))).to_pylist()
    if unusable:
        raise ValueError(f"{path}: sample ids unusable as file names: {unusable[:10]}")
    check_labels(table, classes, path, "; run ingest with the same taxonomy")


def _units(rows: Decisions) -> list[str]:
    """Dedup units: the frames of one sequence are never deduplicated against each other."""
    return [f"{source}/{subject}/{sequence}" if sequence is not None else sample_id
            for sample_id, source, subject, sequence in zip(rows.sample_id, rows.source, rows.subject, rows.sequence)]


def _dataset_parts(shards: Shards, order: np.ndarray, kept: np.ndarray, splits: list, folds: list,
                   groups: np.ndarray, hashes: np.ndarray, labels: list[str],
                   partition_size: int) -> Iterator[pa.Table]:
    """The kept rows (``order[i]`` is where row ``i`` is stored) with their final split and the
    DATASET_SCHEMA columns, ``partition_size`` rows at a time (a shard of the dataset
    manifest each): rows are read from the shards, and the per-row strings (hex pHash, PNG
    path) made, a partition at a time."""
    for start in range(0, len(kept), partition_size):
        rows = kept[start:start + partition_size]
        out = shards.take(order[rows], ALIGNED_SCHEMA.names)
        paths = [f"{splits[i]}/{labels[i]}/{sample_id}.png"
                 for i, sample_id in zip(rows, out["sample_id"].to_pylist())]
        out = out.set_column(out.schema.get_field_index("split"), ALIGNED_SCHEMA.field("split"),
                             pa.array([splits[i] for i in rows], pa.string()))
        extra = {
            "fold": pa.array([folds[i] for i in rows], pa.int16()),
            "dup_group": pa.array([int(groups[i]) if groups[i] >= 0 else None for i in rows], pa.int64()),
            "phash": pa.array(dedup.hash_hex(hashes[rows]), pa.string()),
            "path": pa.array(paths, pa.string()),
            "origin": pa.array(["real"] * len(rows), pa.string()),
        }
        for name, column in extra.items():
            out = out.append_column(DATASET_SCHEMA.field(name), column)
        yield out.select(DATASET_SCHEMA.names).cast(DATASET_SCHEMA)


def _split_report(rows: Decisions, kept: np.ndarray, splits: list, assignment: Assignment,
                  drops: dict[int, tuple[str, str]], classes: Sequence[str], params: SplitParams) -> dict:
    """split.json: kept counts per split x class (x source), subjects per split, folds, drops
    (per reason, and per split x class x reason)."""
    dropped_by_class: dict[str, dict[str, dict[str, int]]] = {s: {} for s in SPLITS}
    for i, (reason, _) in drops.items():
        if splits[i] in dropped_by_class:
            per_reason = dropped_by_class[splits[i]].setdefault(rows.label[i], {})
            per_reason[reason] = per_reason.get(reason, 0) + 1
    counts = {s: {c: 0 for c in classes} for s in SPLITS}
    by_source: dict[str, dict[str, dict[str, int]]] = {s: {} for s in SPLITS}
    for i in kept:
        counts[splits[i]][rows.label[i]] += 1
        per_class = by_source[splits[i]].setdefault(rows.source[i], {c: 0 for c in classes})
        per_class[rows.label[i]] += 1
    kept_groups = {(rows.source[i], rows.subject_key(i)) for i in kept if rows.source[i] in assignment.subjects}
    subjects = {src: {s: [n for n in names if (src, n) in kept_groups] for s, names in per_split.items()}
                for src, per_split in assignment.subjects.items()}
    return {
        "classes": list(classes),
        "params": asdict(params),
        "modes": assignment.modes,
        "counts": counts,
        "counts_by_source": {s: dict(sorted(v.items())) for s, v in by_source.items()},
        "subjects_per_split": {src: {s: len(v) for s, v in per.items()} for src, per in subjects.items()},
        "subjects": subjects,
        "folds": assignment.folds,
        "dropped": dict(sorted(Counter(reason for reason, _ in drops.values()).items())),
        "dropped_by_class": {s: {c: dict(sorted(v[c].items())) for c in classes if c in v}
                             for s, v in dropped_by_class.items()},
    }


def face_stats(shards: Shards, order: np.ndarray, executor: Executor) -> dedup.FaceStats:
    """Every face's hashes, a shard at a time on the executor, in ``order`` (``order[i]`` is
    where row ``i`` is stored): each shard's are put in place, with no second copy."""
    row_of = np.empty(len(order), dtype=np.int64)
    row_of[order] = np.arange(len(order))
    stats, stored = dedup.FaceStats.empty(len(order)), 0
    with progress_bar("split: hash faces", total=len(shards)) as advance:
        for part in executor.map(dedup.face_stats, ((str(f),) for f in shards.files)):
            stats.put(row_of[stored:stored + len(part.sha1)], part)
            stored += len(part.sha1)
            advance(len(part.sha1))
    return stats


def run_split(params: SplitParams, aligned_dir: Path, out_dir: Path,
              taxonomy_classes: Sequence[str] = CLASSES_7, executor: Executor | None = None) -> SplitResult:
    """Read ``aligned_dir/aligned.parquet`` (a shard at a time: the faces are hashed on
    ``executor``, by default a local pool, and copied once into a flat scratch file beside
    ``out_dir``, from which the faces of proposed duplicate pairs are read back a chunk of
    pairs at a time); write the dataset folder ``out_dir`` (its PNGs on ``executor`` too).

    ``out_dir`` receives manifest.parquet (kept samples in sample-id order, DATASET_SCHEMA,
    shards of the executor's partition size), ``{train,val,test}/<class>/<sample_id>.png``
    (every class folder, even empty), dropped.parquet, split.json and dedup.json; it is
    replaced as a whole.
    """
    with using(executor) as pool:
        return _split_on(pool, params, aligned_dir, out_dir, tuple(taxonomy_classes))


def _split_on(pool: Executor, params: SplitParams, aligned_dir: Path, out_dir: Path,
              classes: tuple[str, ...]) -> SplitResult:
    """:func:`run_split` with its executor open."""
    path = Path(aligned_dir) / "aligned.parquet"
    shards = Shards(path)
    missing = [name for name in ALIGNED_SCHEMA.names if name not in shards.schema.names]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected the aligned manifest")
    table = shards.read(DECISION_COLUMNS).cast(pa.schema([ALIGNED_SCHEMA.field(name) for name in DECISION_COLUMNS]))
    _check_input(table, path, classes)
    order = pc.sort_indices(table["sample_id"]).to_numpy()
    if (np.diff(order) != 1).any():  # align writes sample-id order; any other is put in it
        table = table.take(pa.array(order))
    rows = Decisions.of(table)
    ids = rows.sample_id
    bad_split = {i: ("unknown_split", f"split {split!r} is not one of {list(SPLITS)}")
                 for i, split in enumerate(rows.split) if split is not None and split not in SPLITS}
    valid = dedup.rows_except(len(rows), bad_split)
    assignment = assign_splits(rows.take(valid) if bad_split else rows, params, len(classes))
    splits: list[str | None] = [None] * len(rows)
    folds: list[int | None] = [None] * len(rows)
    for k, i in enumerate(valid):
        splits[i], folds[i] = assignment.split[k], assignment.fold[k]

    stats = face_stats(shards, order, pool)
    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".faces-", dir=Path(out_dir).parent) as scratch, \
            FaceFile(shards, order, Path(scratch) / "faces.u8") as images:
        found = dedup.deduplicate(
            stats, images, ids, splits, _units(rows), rows.label, table["content_hash"], set(bad_split),
            phash_threshold=params.phash_threshold, near_max_diff=params.near_max_diff,
            blank_std=params.blank_std, leak_policy=params.leak_policy,
            within_split=params.within_split_duplicates, label_conflicts=params.label_conflicts)
    drops = {**bad_split, **found.drops}
    kept = dedup.rows_except(len(rows), drops)
    labels = rows.label
    parts = _dataset_parts(shards, order, kept, splits, folds, found.groups, found.hashes, labels,
                           pool.partition_size)
    dropped_rows = np.array(sorted(drops), dtype=np.int64)
    rejects = [Reject(rows.source[i], location, *drops[i], kind="dropped", sample_id=ids[i])
               for i, location in zip(dropped_rows, _locations(shards, order[dropped_rows]))]
    dropped: dict[str, list[str]] = {}
    for r in sorted(rejects, key=lambda r: r.reason):
        dropped.setdefault(r.reason, []).append(r.sample_id)
    split_report = _split_report(rows, kept, splits, assignment, drops, classes, params)
    dedup_params = {k: getattr(params, k) for k in
                    ("phash_threshold", "near_max_diff", "blank_std", "leak_policy", "within_split_duplicates",
                     "label_conflicts")}
    dedup_json = dedup.dedup_report(found, ids, splits, labels, dedup_params)
    write_dataset(Path(out_dir), parts, len(kept), rejects, classes, SPLITS,
                  {"split.json": split_report, "dedup.json": dedup_json}, pool)
    return SplitResult(
        classes=classes, counts=split_report["counts"], subjects=split_report["subjects_per_split"],
        groups=dedup_json["groups_found"], leaks_resolved=dedup_json["leaks_resolved"],
        leaks_kept=dedup_json["leaks_kept"],
        dropped=dropped, dropped_by_class=split_report["dropped_by_class"], out_dir=Path(out_dir),
    )
