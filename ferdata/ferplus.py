"""FER+ relabelling: ten annotators' votes per FER2013 image become its label, or a drop.

``raw/ferplus/fer2013new.csv`` (https://github.com/microsoft/FERPlus) has one row per
``fer2013.csv`` data row, in the same order, so FER2013's sample ``fer2013-000123`` is
FER+ data row 123. Each row counts the votes of ten annotators over eight emotions plus
``unknown`` and ``NF`` (not a face). As in the FER+ code, a class with a single vote is
set to zero first. Then, in order:

* no image name -> dropped ``ferplus_no_image``; no class left with votes ->
  ``ferplus_no_votes``;
* ``NF`` or ``unknown`` among the top-voted columns -> ``ferplus_not_a_face`` or
  ``ferplus_unknown``;
* ``ferplus-majority``: the top emotion must hold more than half of all remaining votes
  (``unknown`` and ``NF`` count in the total), else ``ferplus_no_majority``;
* ``ferplus-plurality`` and ``ferplus-probability``: the single top emotion; a tie at the
  top -> ``ferplus_tie``. Probability mode also keeps the vote shares over the taxonomy's
  classes as the soft label;
* a label outside the taxonomy (contempt with 7 classes) -> ``not_in_taxonomy``.

A row that cannot be read, or whose Usage differs from FER2013's (a sign the files are not
in the same order), is rejected (``malformed_row``, ``unknown_usage``, ``bad_vote``,
``usage_mismatch``) and its sample removed: its FER+ label is unknown.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from ferdata.manifest import SOFT_LABEL_FIELD, Reject
from ferdata.sources.base import MissingSourceError
from ferdata.sources.fer2013_splits import FERPLUS_FOLDERS, USAGE_SPLITS
from ferdata.taxonomy import CLASSES_7, CLASSES_8, SOURCE_LABELS, Taxonomy

SOURCE = "ferplus"  # the folder under raw/, and the source named in rejects
FILE_NAME = "fer2013new.csv"
#: FER+'s folder layout: one of these in each of FERPLUS_FOLDERS, lines ``name,"(box)",votes...``
LABEL_FILE = "label.csv"
HOMEPAGE = "https://github.com/microsoft/FERPlus"

#: The vote columns, in the file's order.
VOTE_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
COLUMNS: tuple[str, ...] = ("Usage", "Image name", *VOTE_COLUMNS)
#: FER+ emotion column -> canonical class.
EMOTION_CLASSES: dict[str, str] = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "angry", "disgust": "disgust", "fear": "fear", "contempt": "contempt",
}
_CLASS_COLUMN = {name: VOTE_COLUMNS.index(col) for col, name in EMOTION_CLASSES.items()}

#: Values of the params key ``ingest.labels``; ``fer2013`` keeps FER2013's own labels.
LABEL_MODES: tuple[str, ...] = ("fer2013", "ferplus-majority", "ferplus-plurality", "ferplus-probability")
FERPLUS_MODES = LABEL_MODES[1:]

#: Columns of the agreement matrix: the FER+ label, or what became of the row instead.
OUTCOMES: tuple[str, ...] = CLASSES_8 + (
    "no_image", "not_a_face", "unknown", "no_majority", "tie", "no_votes", "rejected")

_SAMPLE_ID = re.compile(r"fer2013-(\d{6,})")
_COUNT = re.compile(r"[0-9]+")


class FerplusError(ValueError):
    """FER+ votes cannot be joined to FER2013 at all (header, row count, id scheme)."""


@dataclass
class FerplusVotes:
    """FER+ votes as read. From fer2013new.csv, data row ``i`` belongs to FER2013's data row
    ``i``; from FER+'s folders, row ``i`` belongs to the sample ``sample_ids[i]``."""

    file_name: str  # what was read, for reports
    locations: list[str]  # file:line of each data row
    usage: list[str]
    has_image: list[bool]
    votes: np.ndarray  # (rows, 10) int64 in VOTE_COLUMNS order; zeros where unreadable
    unreadable: dict[int, tuple[str, str]] = field(default_factory=dict)  # row -> (reason, message)
    sample_ids: list[str] | None = None

    def __len__(self) -> int:
        return len(self.locations)

    def location(self, row: int) -> str:
        return self.locations[row]


@dataclass(frozen=True)
class Verdict:
    """What the votes of one row say: a canonical class, or why there is none."""

    label: str | None
    reason: str | None = None
    message: str = ""


@dataclass
class FerplusReport:
    """What relabelling did to the manifest's FER2013 samples, and how the labels compare."""

    mode: str
    file: str
    rows: int  # data rows in fer2013new.csv
    matched: int  # FER2013 samples of the manifest joined to a FER+ row
    kept: int
    relabelled: int  # kept samples whose class changed
    removed: dict[str, int]  # reason -> samples removed from the manifest
    #: counts[FER2013 class][outcome], rows in CLASSES_7 order, columns in OUTCOMES order
    agreement: list[list[int]]

    @property
    def agreement_rate(self) -> float:
        """Among samples FER+ gives an emotion, the share where it is FER2013's label."""
        counts = np.array(self.agreement)[:, :len(CLASSES_8)]
        same = sum(counts[i, CLASSES_8.index(c)] for i, c in enumerate(CLASSES_7))
        total = counts.sum()
        return float(same / total) if total else 0.0


def read_ferplus(path: Path) -> FerplusVotes:
    """Read fer2013new.csv; a bad header raises, a bad row is recorded in ``unreadable``."""
    path = Path(path)
    if not path.is_file():
        raise MissingSourceError(f"{path}: not found. FER+ labels are fer2013new.csv from {HOMEPAGE}; "
                                 f"put it at raw/{SOURCE}/{FILE_NAME}")
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        positions = _header_positions(header, path.name)
        lines, usage, has_image, votes = [], [], [], []
        unreadable: dict[int, tuple[str, str]] = {}
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            row = len(lines)
            lines.append(reader.line_num)
            try:
                row_usage, name, counts = _parse_row(fields, positions, len(header))
            except _BadRow as bad:
                unreadable[row] = (bad.reason, str(bad))
                row_usage, name, counts = "", "", [0] * len(VOTE_COLUMNS)
            usage.append(row_usage)
            has_image.append(bool(name))
            votes.append(counts)
    votes_array = np.array(votes, dtype=np.int64).reshape(-1, len(VOTE_COLUMNS))
    return FerplusVotes(path.name, [f"{path.name}:{line}" for line in lines], usage, has_image, votes_array,
                        unreadable)


def ferplus_folder_sample_id(file_name: str) -> str:
    """The sample id of an image of FER+'s folders: ``fer2013-`` and its file stem."""
    return f"fer2013-{Path(file_name).stem}"


def read_ferplus_folders(root: Path) -> FerplusVotes:
    """The votes in FER+'s folder layout under ``root`` (``FER2013Train/label.csv`` ...).

    A line ``fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0`` gives the image's file
    name, its face box and the ten vote counts; the usage is the folder's. A line that
    cannot be read is recorded in ``unreadable`` with its reason.
    """
    locations, usage, votes, sample_ids = [], [], [], []
    unreadable: dict[int, tuple[str, str]] = {}
    for folder_usage, folder in FERPLUS_FOLDERS.items():
        path = Path(root) / folder / LABEL_FILE
        if not path.is_file():
            continue
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
            reader = csv.reader(fh)
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue
                row = len(locations)
                locations.append(f"{folder}/{LABEL_FILE}:{reader.line_num}")
                usage.append(folder_usage)
                sample_ids.append(ferplus_folder_sample_id(fields[0].strip()) if fields[0].strip() else "")
                try:
                    votes.append(_folder_votes(fields))
                except _BadRow as bad:
                    unreadable[row] = (bad.reason, str(bad))
                    votes.append([0] * len(VOTE_COLUMNS))
    votes_array = np.array(votes, dtype=np.int64).reshape(-1, len(VOTE_COLUMNS))
    return FerplusVotes(f"{LABEL_FILE} files", locations, usage, [bool(i) for i in sample_ids], votes_array,
                        unreadable, sample_ids)


def _folder_votes(fields: list[str]) -> list[int]:
    """The ten vote counts of a label.csv line, or _BadRow saying what is wrong."""
    width = 2 + len(VOTE_COLUMNS)
    if len(fields) != width:
        raise _BadRow("malformed_row", f"expected {width} comma-separated fields (file name, quoted face box, "
                                       f"{len(VOTE_COLUMNS)} vote counts), found {len(fields)}")
    counts = [f.strip() for f in fields[2:]]
    for column, count in zip(VOTE_COLUMNS, counts):
        if not _COUNT.fullmatch(count):
            raise _BadRow("bad_vote", f"{column} votes {count!r} is not a whole number >= 0")
    return [int(c) for c in counts]


def _header_positions(header: list[str] | None, file_name: str) -> list[int]:
    """Where each of COLUMNS is in the header (names matched ignoring case and spaces)."""
    if not header or not any(h.strip() for h in header):
        raise FerplusError(f"{file_name}:1: expected the header {','.join(COLUMNS)}")
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c.lower() not in names]
    if missing:
        raise FerplusError(f"{file_name}:1: the header lacks the column(s) {', '.join(missing)}; "
                           f"expected {','.join(COLUMNS)}")
    return [names.index(c.lower()) for c in COLUMNS]


class _BadRow(ValueError):
    """A data row that cannot be read: a reason code and a message for people."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _parse_row(fields: list[str], positions: list[int], width: int) -> tuple[str, str, list[int]]:
    """(Usage, image name, vote counts) of one data row, or _BadRow saying what is wrong."""
    if len(fields) != width:
        raise _BadRow("malformed_row", f"expected {width} comma-separated fields, found {len(fields)}")
    usage, name, *counts = (fields[p].strip() for p in positions)
    if usage not in USAGE_SPLITS:
        raise _BadRow("unknown_usage", f"Usage {usage!r} is not one of {', '.join(USAGE_SPLITS)}")
    for column, count in zip(VOTE_COLUMNS, counts):
        if not _COUNT.fullmatch(count):
            raise _BadRow("bad_vote", f"{column} votes {count!r} is not a whole number >= 0")
    return usage, name, [int(c) for c in counts]


def _describe(votes: np.ndarray) -> str:
    return ", ".join(f"{c} {n}" for c, n in zip(VOTE_COLUMNS, votes.tolist()) if n) or "none"


def verdict(votes: np.ndarray, has_image: bool, mode: str) -> Verdict:
    """The FER+ label of one row's votes under ``mode`` (see the module docstring)."""
    if mode not in FERPLUS_MODES:
        raise ValueError(f"unknown FER+ mode {mode!r}; known: {', '.join(FERPLUS_MODES)}")
    if not has_image:
        return Verdict(None, "ferplus_no_image", "FER+ gives no image name for this row: no usable image")
    seen = f"FER+ votes ({_describe(votes)})"
    kept = np.where(votes == 1, 0, votes)
    total = int(kept.sum())
    if total == 0:
        return Verdict(None, "ferplus_no_votes", f"{seen}: no class has two or more votes")
    top = int(kept.max())
    tops = [VOTE_COLUMNS[i] for i in np.flatnonzero(kept == top)]
    if "NF" in tops:
        return Verdict(None, "ferplus_not_a_face", f"{seen}: most annotators saw no face")
    if "unknown" in tops:
        return Verdict(None, "ferplus_unknown", f"{seen}: most annotators could not name the emotion")
    if mode == "ferplus-majority" and 2 * top <= total:
        return Verdict(None, "ferplus_no_majority",
                       f"{seen}: the top emotion has {top} of {total} votes, not more than half")
    if len(tops) > 1:
        return Verdict(None, "ferplus_tie", f"{seen}: {' and '.join(tops)} tie for the most votes")
    return Verdict(EMOTION_CLASSES[tops[0]])


def soft_label(votes: np.ndarray, taxonomy: Taxonomy) -> list[float]:
    """Vote shares over the taxonomy's classes, in class index order, single votes zeroed."""
    kept = np.where(votes == 1, 0, votes)
    counts = np.array([kept[_CLASS_COLUMN[c]] for c in taxonomy.classes], dtype=np.float64)
    return (counts / counts.sum()).tolist()


def fer2013_row(sample_id: str) -> int | None:
    """The fer2013.csv data row of a FER2013 sample id, or None for another id scheme."""
    match = _SAMPLE_ID.fullmatch(sample_id)
    return int(match.group(1)) if match else None


def majority_labels(votes: FerplusVotes) -> list[str | None]:
    """Each row's FER+ majority class (None: no majority, no face, unknown or unreadable)."""
    return [None if row in votes.unreadable
            else verdict(votes.votes[row], votes.has_image[row], "ferplus-majority").label
            for row in range(len(votes))]


def apply_ferplus(
    manifest: pa.Table, ferplus_csv: Path, mode: str, taxonomy: Taxonomy,
    fer2013_rows: int | None = None,
) -> tuple[pa.Table, list[Reject], FerplusReport]:
    """Relabel the manifest's FER2013 samples from FER+ votes under ``mode``.

    Kept samples get the FER+ ``label`` / ``label_index`` (``native_label`` stays
    FER2013's); samples FER+ drops are removed and returned as rejects (source
    ``ferplus``, location ``fer2013new.csv:<line>``), one per removed sample. The result
    has a ``soft_label`` column, set in probability mode. ``fer2013_rows``, the number of
    data rows fer2013.csv had, is checked against fer2013new.csv when given.
    """
    votes = read_ferplus(ferplus_csv)
    if fer2013_rows is not None and fer2013_rows != len(votes):
        raise FerplusError(f"{ferplus_csv}: {len(votes)} data rows, but fer2013.csv has {fer2013_rows}; "
                           "FER+ rows are joined to FER2013 rows by their order, so the counts must match")
    return apply_votes(manifest, votes, mode, taxonomy)


def apply_votes(manifest: pa.Table, votes: FerplusVotes, mode: str,
                taxonomy: Taxonomy) -> tuple[pa.Table, list[Reject], FerplusReport]:
    """:func:`apply_ferplus` with votes already read (from fer2013new.csv or FER+'s folders)."""
    if mode not in FERPLUS_MODES:
        raise ValueError(f"ingest.labels {mode!r} is not a FER+ mode; known: {', '.join(FERPLUS_MODES)}")
    joined = _joiner(votes)
    rows = manifest.select(["sample_id", "source", "native_label", "split"]).to_pylist()
    labels = manifest["label"].to_pylist()
    soft: list[list[float] | None] = (manifest["soft_label"].to_pylist() if "soft_label" in manifest.column_names
                                      else [None] * manifest.num_rows)
    keep = np.ones(manifest.num_rows, dtype=bool)
    rejects: list[Reject] = []
    agreement = np.zeros((len(CLASSES_7), len(OUTCOMES)), dtype=np.int64)
    matched = relabelled = 0
    for i, r in enumerate(rows):
        if r["source"] != "fer2013":
            continue
        row = joined(r["sample_id"])
        matched += 1
        outcome, reject = _outcome(votes, row, r, mode, taxonomy)
        agreement[CLASSES_7.index(SOURCE_LABELS["fer2013"][r["native_label"]]), OUTCOMES.index(outcome)] += 1
        if reject is not None:
            keep[i] = False
            rejects.append(reject)
            continue
        relabelled += outcome != labels[i]
        labels[i] = outcome
        if mode == "ferplus-probability":
            soft[i] = soft_label(votes.votes[row], taxonomy)
    table = _relabelled(manifest, labels, soft, taxonomy).filter(pa.array(keep))
    removed: dict[str, int] = {}
    for reject in rejects:
        removed[reject.reason] = removed.get(reject.reason, 0) + 1
    report = FerplusReport(mode, votes.file_name, len(votes), matched, matched - len(rejects), relabelled,
                           dict(sorted(removed.items())), agreement.tolist())
    return table, rejects, report


def _joiner(votes: FerplusVotes) -> Callable[[str], int]:
    """Sample id -> FER+ data row, raising FerplusError for a sample that cannot have one."""
    if votes.sample_ids is not None:
        rows = {sid: row for row, sid in enumerate(votes.sample_ids) if sid}

        def by_name(sample_id: str) -> int:
            if sample_id not in rows:
                raise FerplusError(f"{votes.file_name}: no line names the image of sample {sample_id!r}")
            return rows[sample_id]
        return by_name

    def by_row(sample_id: str) -> int:
        row = fer2013_row(sample_id)
        if row is None:
            raise FerplusError(f"{votes.file_name}: FER+ rows are joined to fer2013.csv rows, but sample "
                               f"{sample_id!r} does not come from fer2013.csv (the image-folder release "
                               "cannot be joined)")
        if row >= len(votes):
            raise FerplusError(f"{votes.file_name}: {len(votes)} data rows, but FER2013 has sample {sample_id} "
                               f"(data row {row}); the files do not match")
        return row
    return by_row


def _outcome(votes: FerplusVotes, row: int, sample: dict, mode: str,
             taxonomy: Taxonomy) -> tuple[str, Reject | None]:
    """(OUTCOMES entry, reject or None) of one FER2013 sample."""
    location = votes.location(row)

    def reject(outcome: str, reason: str, message: str, kind: str = "dropped") -> tuple[str, Reject]:
        return outcome, Reject(SOURCE, location, reason, message, kind=kind, sample_id=sample["sample_id"])

    if row in votes.unreadable:
        return reject("rejected", *votes.unreadable[row], kind="rejected")
    if USAGE_SPLITS[votes.usage[row]] != sample["split"]:
        return reject("rejected", "usage_mismatch",
                      f"Usage {votes.usage[row]} but fer2013.csv puts {sample['sample_id']} in split "
                      f"{sample['split']}: the files' rows are not in the same order", kind="rejected")
    found = verdict(votes.votes[row], votes.has_image[row], mode)
    if found.label is None:
        return reject(found.reason.removeprefix("ferplus_"), found.reason, found.message)
    if found.label not in taxonomy:
        return reject(found.label, "not_in_taxonomy",
                      f"FER+ label {found.label!r} has no class in the {len(taxonomy)}-class taxonomy")
    return found.label, None


def _relabelled(manifest: pa.Table, labels: list[str], soft: list, taxonomy: Taxonomy) -> pa.Table:
    """The manifest with new ``label``, ``label_index`` and ``soft_label`` columns."""
    columns = {
        "label": pa.array(labels, manifest.schema.field("label").type),
        "label_index": pa.array([taxonomy.index(c) for c in labels], manifest.schema.field("label_index").type),
    }
    for name, values in columns.items():
        i = manifest.schema.get_field_index(name)
        manifest = manifest.set_column(i, manifest.schema.field(i), values)
    soft_values = pa.array(soft, SOFT_LABEL_FIELD.type)
    if "soft_label" in manifest.column_names:
        i = manifest.schema.get_field_index("soft_label")
        return manifest.set_column(i, manifest.schema.field(i), soft_values)
    return manifest.append_column(SOFT_LABEL_FIELD, soft_values)


# --- the agreement matrix ----------------------------------------------------------------


def write_agreement(report: FerplusReport, out_dir: Path) -> list[Path]:
    """Write ferplus_agreement.json, .csv and .png (a heatmap) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**asdict(report), "agreement_rate": round(report.agreement_rate, 6),
            "agreement": {name: dict(zip(OUTCOMES, counts)) for name, counts in zip(CLASSES_7, report.agreement)},
            "rows_are": "FER2013 label", "columns_are": "FER+ label, or why FER+ gives none"}
    paths = [out_dir / f"ferplus_agreement.{ext}" for ext in ("json", "csv", "png")]
    _atomic(paths[0], lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))
    _atomic(paths[1], lambda tmp: _write_csv(tmp, report))
    _atomic(paths[2], lambda tmp: _write_heatmap(tmp, report))
    return paths


def _atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through a temporary file renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_csv(path: Path, report: FerplusReport) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["fer2013_label", *OUTCOMES])
        for name, counts in zip(CLASSES_7, report.agreement):
            writer.writerow([name, *counts])


def _write_heatmap(path: Path, report: FerplusReport) -> None:
    """Counts in each cell; colour: the share of the FER2013 class's row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.array(report.agreement)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(12, 5.5))
    try:
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.axvline(len(CLASSES_8) - 0.5, color="grey", linewidth=1)
        ax.set_xticks(range(len(OUTCOMES)), OUTCOMES, rotation=45, ha="right")
        ax.set_yticks(range(len(CLASSES_7)), CLASSES_7)
        ax.set_xlabel("FER+ label (or why it gives none)")
        ax.set_ylabel("FER2013 label")
        ax.set_title(f"FER2013 vs FER+ ({report.mode}): {report.agreement_rate:.1%} agree "
                     f"of {counts[:, :len(CLASSES_8)].sum()} samples FER+ gives an emotion")
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                        color="white" if shares[i, j] > 0.5 else "black")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    finally:
        plt.close(fig)
