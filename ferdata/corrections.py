"""The corrections loop: annotators' tags -> corrections.csv -> the next build's manifest.

In the FiftyOne App an annotator tags a sample ``relabel:<class>`` (its label is wrong) or
``exclude`` (not a usable face); ``reviewed`` and other tags are notes and carry no action.
corrections.csv lives in git, one row per corrected sample, sorted by sample id::

    sample_id,action,new_label,when
    fer2013-000123,relabel,sad,2024-05-01
    jaffe-KA.AN1.39,exclude,,2024-05-01

Ingest applies it: relabelled samples take the new class (``native_label`` keeps what the
source said), excluded ones are dropped with the reason ``excluded_by_review``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from ferdata.manifest import Reject

if TYPE_CHECKING:
    import fiftyone as fo

COLUMNS = ("sample_id", "action", "new_label", "when")
RELABEL_PREFIX = "relabel:"
EXCLUDE_TAG = "exclude"
EXCLUDED_REASON = "excluded_by_review"


class CorrectionsError(ValueError):
    """Corrections that cannot be used; ``problems`` lists every one, one line each."""

    def __init__(self, headline: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(headline + "\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Correction:
    """One row of corrections.csv; ``line`` is its line in the file (0 before it is written)."""

    sample_id: str
    action: str  # relabel or exclude
    new_label: str  # empty for exclude
    when: str  # ISO date the correction was first exported
    line: int = 0

    def same_decision(self, other: "Correction") -> bool:
        return (self.action, self.new_label) == (other.action, other.new_label)


@dataclass
class ExportResult:
    """What an export did to corrections.csv."""

    path: Path
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    total: int = 0

    def summary(self) -> str:
        return (f"{self.path}: {self.total} correction(s); {self.added} new, {self.changed} changed, "
                f"{self.unchanged} unchanged")


@dataclass
class CorrectionsReport:
    """What applying corrections.csv to a manifest did."""

    relabelled: int = 0  # labels that changed
    unchanged: int = 0  # relabels to the label the sample already had
    excluded: int = 0
    other_sources: int = 0  # rows for sources not in this manifest (not ingested this time)
    rejects: list[Reject] = field(default_factory=list)  # one "dropped" Reject per excluded sample

    def summary(self) -> str:
        return (f"corrections: {self.relabelled} relabelled, {self.excluded} excluded, "
                f"{self.unchanged} already right, {self.other_sources} for sources not ingested")


def tag_corrections(tagged: Iterable[tuple[str, Sequence[str]]], known_ids: set[str],
                    classes: Sequence[str], when: str) -> list[Correction]:
    """The corrections that ``(sample_id, tags)`` pairs ask for; every problem at once.

    Two different relabels on one sample, a relabel with an exclude, a class outside
    ``classes`` or a sample id outside ``known_ids`` raise :class:`CorrectionsError`.
    """
    corrections, problems = [], []
    for sample_id, tags in tagged:
        tags = [t.strip().lower() for t in tags]
        relabels = sorted({t[len(RELABEL_PREFIX):].strip() for t in tags if t.startswith(RELABEL_PREFIX)})
        exclude = EXCLUDE_TAG in tags
        if not relabels and not exclude:
            continue
        asked = [f"{RELABEL_PREFIX}{c}" for c in relabels] + ([EXCLUDE_TAG] if exclude else [])
        if sample_id not in known_ids:
            problems.append(f"{sample_id}: tagged {', '.join(asked)} but is not in the dataset manifest or dropped.parquet")
        unknown = [c for c in relabels if c not in classes]
        if unknown:
            problems.append(f"{sample_id}: unknown class in {', '.join(RELABEL_PREFIX + c for c in unknown)}; "
                            f"classes are {', '.join(classes)}")
        if len(asked) > 1:
            problems.append(f"{sample_id}: conflicting tags {', '.join(asked)}; keep exactly one")
        if len(asked) == 1 and not unknown and sample_id in known_ids:
            corrections.append(Correction(sample_id, "exclude", "", when) if exclude
                               else Correction(sample_id, "relabel", relabels[0], when))
    if problems:
        raise CorrectionsError(f"{len(problems)} problem(s) in the review tags; nothing was exported:",
                               problems)
    return corrections


def read_corrections(path: Path, classes: Sequence[str]) -> list[Correction]:
    """corrections.csv's rows, checked; every bad line is reported as ``file:line: problem``."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != COLUMNS:
        raise CorrectionsError(f"{path}:1: bad header", [f"{path}:1: expected {','.join(COLUMNS)}, got "
                                                         f"{','.join(header or [])!r}"])
    rows, problems, seen = [], [], {}
    for line, values in enumerate(reader, start=2):
        if not values or all(not v.strip() for v in values):
            continue
        where = f"{path}:{line}"
        if len(values) != len(COLUMNS):
            problems.append(f"{where}: expected {len(COLUMNS)} fields, got {len(values)}")
            continue
        sample_id, action, new_label, when = (v.strip() for v in values)
        if not sample_id:
            problems.append(f"{where}: empty sample_id")
        elif sample_id in seen:
            problems.append(f"{where}: {sample_id} already corrected on line {seen[sample_id]}")
        seen.setdefault(sample_id, line)
        if action == "relabel" and new_label not in classes:
            problems.append(f"{where}: unknown class {new_label!r}; classes are {', '.join(classes)}")
        elif action == "exclude" and new_label:
            problems.append(f"{where}: exclude takes no new_label (got {new_label!r})")
        elif action not in ("relabel", "exclude"):
            problems.append(f"{where}: action must be relabel or exclude, not {action!r}")
        try:
            dt.date.fromisoformat(when)
        except ValueError:
            problems.append(f"{where}: when must be an ISO date (YYYY-MM-DD), not {when!r}")
        rows.append(Correction(sample_id, action, new_label, when, line))
    if problems:
        raise CorrectionsError(f"{path}: {len(problems)} bad line(s):", problems)
    return rows


def write_corrections(corrections: Iterable[Correction], path: Path) -> None:
    """Write corrections.csv sorted by sample id, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for c in sorted(corrections, key=lambda c: c.sample_id):
            writer.writerow((c.sample_id, c.action, c.new_label, c.when))
    tmp.replace(path)


def merge_corrections(existing: list[Correction], new: list[Correction],
                      path: Path) -> tuple[list[Correction], ExportResult]:
    """The file's rows updated by the tags' decisions; an unchanged decision keeps its date."""
    merged = {c.sample_id: c for c in existing}
    result = ExportResult(path)
    for c in new:
        old = merged.get(c.sample_id)
        if old is None:
            result.added += 1
            merged[c.sample_id] = c
        elif old.same_decision(c):
            result.unchanged += 1
        else:
            result.changed += 1
            merged[c.sample_id] = c
    result.total = len(merged)
    return list(merged.values()), result


def export_corrections(dataset: "fo.Dataset | fo.DatasetView", path: Path, known_ids: set[str],
                       classes: Sequence[str], today: dt.date | None = None) -> ExportResult:
    """Turn the review tags of ``dataset`` into rows of corrections.csv at ``path``.

    Rows already in the file are kept; a sample's tags replace its row when they decide
    differently. ``known_ids`` are the sample ids of the dataset manifest. Any problem
    (conflicting tags, unknown ids or classes, a bad line in the file) raises
    :class:`CorrectionsError` listing all of them, and the file is left as it was.
    """
    path = Path(path)
    when = (today or dt.date.today()).isoformat()
    tagged = zip(dataset.values("sample_id"), dataset.values("tags"))
    new = tag_corrections(tagged, known_ids, classes, when)
    existing = read_corrections(path, classes) if path.exists() else []
    merged, result = merge_corrections(existing, new, path)
    write_corrections(merged, path)
    return result


def apply_corrections(table: pa.Table, path: Path,
                      classes: Sequence[str]) -> tuple[pa.Table, CorrectionsReport]:
    """Relabel and drop a manifest's samples as corrections.csv says; no file, no change.

    ``table`` needs ``sample_id``, ``source``, ``label`` and ``label_index``; its schema is
    kept. A row naming a sample that is missing from the manifest, while its source is in
    it, is an error (``file:line``); rows for sources not in the manifest are counted only.
    """
    path = Path(path)
    report = CorrectionsReport()
    if not path.exists():
        return table, report
    rows = read_corrections(path, classes)
    ids = table["sample_id"].to_pylist()
    position = {sid: i for i, sid in enumerate(ids)}
    sources = set(table["source"].to_pylist())
    problems = []
    relevant = []
    for c in rows:
        if c.sample_id in position:
            relevant.append(c)
        elif any(c.sample_id.startswith(f"{source}-") for source in sources):
            problems.append(f"{path}:{c.line}: {c.sample_id} is not in the manifest "
                            f"(was it renamed, or removed from raw/?)")
        else:
            report.other_sources += 1
    if problems:
        raise CorrectionsError(f"{path}: {len(problems)} correction(s) name unknown samples:", problems)

    labels = table["label"].to_pylist()
    row_sources = table["source"].to_pylist()
    keep = [True] * len(ids)
    for c in relevant:
        i = position[c.sample_id]
        if c.action == "exclude":
            keep[i] = False
            report.excluded += 1
            report.rejects.append(Reject(
                row_sources[i], f"{path}:{c.line}", EXCLUDED_REASON,
                f"excluded by review on {c.when}", kind="dropped", sample_id=c.sample_id))
        elif labels[i] == c.new_label:
            report.unchanged += 1
        else:
            labels[i] = c.new_label
            report.relabelled += 1
    out = _set_column(table, "label", pa.array(labels, table.schema.field("label").type))
    out = _set_column(out, "label_index",
                      pa.array([classes.index(v) for v in labels], table.schema.field("label_index").type))
    return out.filter(pa.array(keep)), report


def _set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), values)
