"""The ingest stage: every source's raw files -> one manifest, a rejects table and an account."""

from __future__ import annotations

import json
import tempfile
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferdata.corrections import CorrectionsReport, apply_corrections
from ferdata.executor import Executor, using
from ferdata.ferplus import FILE_NAME as FERPLUS_FILE
from ferdata.ferplus import LABEL_MODES, apply_ferplus, apply_votes, read_ferplus_folders, write_agreement
from ferdata.ferplus import SOURCE as FERPLUS_SOURCE
from ferdata.given import GIVEN_FILE, GivenSpill, given_table
from ferdata.manifest import INGEST_SCHEMA, SOFT_LABEL_FIELD, Reject, rejects_table, write_table
from ferdata.progress import progress_bar
from ferdata.shards import write_sharded
from ferdata.source_rows import SourceRows, compact, gather
from ferdata.sources.base import MissingSourceError, Source, SourceBatch, measure_images
from ferdata.sources.registry import FOLDER, SOURCES
from ferdata.taxonomy import Taxonomy


@dataclass
class IngestParams:
    """The ``ingest:`` section of params.yaml."""

    sources: list[str] = field(default_factory=lambda: ["fer2013", "ckplus", "jaffe"])
    taxonomy: int = 7
    strict: bool = False
    labels: str = "fer2013"  # or a FER+ mode: ferplus-majority, -plurality, -probability
    seed: int = 42  # the shared seed: which train rows val_from_train moves
    val_from_train: dict = field(default_factory=lambda: {"affectnet": 0.1})  # source -> share moved to val
    fer2013: dict = field(default_factory=dict)
    ckplus: dict = field(default_factory=lambda: {"peak_frames": 3, "neutral_frames": 1})
    jaffe: dict = field(default_factory=dict)
    raf_db: dict = field(default_factory=lambda: {"images": "original"}, metadata={"key": "raf-db"})
    affectnet: dict = field(default_factory=dict)
    folders: dict = field(default_factory=dict)  # name -> {labels: {class folder: class}}

    def known(self) -> list[str]:
        """Every source name this section can read: the registered ones and its folders."""
        return [*SOURCES, *self.folders]

    def reader(self, name: str, raw_dir: Path) -> Source:
        """The reader of source ``name`` over ``raw_dir/<name>/``, with its options from this section."""
        if name in self.folders:
            if name in SOURCES:
                raise ValueError(f"params.yaml [ingest].folders.{name}: {name} is a built-in source; "
                                 "name the folder source differently")
            cls, options, key = FOLDER, {"name": name, **(self.folders[name] or {})}, f"folders.{name}"
        else:
            by_key = {f.metadata.get("key", f.name): f.name for f in fields(self)}
            cls, options, key = SOURCES[name], getattr(self, by_key[name]) or {}, name
        try:
            return cls(raw_dir / name, **options)
        except TypeError as exc:
            raise ValueError(f"params.yaml [ingest].{key}: {exc}") from None


@dataclass
class SourceAccount:
    """What became of every item one source offered: seen = accepted + rejected + dropped."""

    seen: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return self.seen == self.accepted + sum(self.rejected.values()) + sum(self.dropped.values())


@dataclass
class IngestResult:
    """The stage's outcome, for the summary table and strict mode."""

    accounts: dict[str, SourceAccount]
    rejects: list[Reject]
    manifest_rows: int
    corrections: CorrectionsReport

    @property
    def rejected(self) -> list[Reject]:
        return [r for r in self.rejects if r.kind == "rejected"]


def unknown_sources(params: IngestParams) -> list[str]:
    """Names in ``sources`` that neither a registered source nor a folder source answers to."""
    return [n for n in params.sources if n not in params.known()]


def ferplus_folders_read(params: IngestParams, raw_dir: Path) -> bool:
    """Whether FER2013 comes as FER+'s folders, whose label.csv files hold the votes."""
    return "fer2013" in params.sources and params.reader("fer2013", raw_dir).has_ferplus_folders()


def check_params(params: IngestParams, raw_dir: Path) -> None:
    """Refuse unknown taxonomies, label modes and val shares, and a label mode the files cannot
    give, before any work."""
    Taxonomy.of_size(params.taxonomy)
    if params.labels not in LABEL_MODES:
        raise ValueError(f"ingest.labels {params.labels!r} is unknown; known: {', '.join(LABEL_MODES)}")
    for name, share in params.val_from_train.items():
        if name not in params.known() or not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise ValueError(f"params.yaml [ingest].val_from_train.{name}: expected a known source and a "
                             f"share in 0..1, got {share!r}; known sources: {', '.join(params.known())}")
    if ferplus_folders_read(params, raw_dir):
        if params.labels == "fer2013":
            raise ValueError(f"{raw_dir / 'fer2013'}: FER+'s folders carry FER+ votes, not FER2013's labels; "
                             f"set ingest.labels to one of {', '.join(LABEL_MODES[1:])}")
        return
    ferplus = raw_dir / FERPLUS_SOURCE / FERPLUS_FILE
    if params.labels != "fer2013" and not ferplus.exists():
        raise MissingSourceError(f"{ferplus}: not found; ingest.labels={params.labels} needs the FER+ "
                                 "votes (fer2013new.csv from the FER+ repository, MIT licence)")


def read_sources(params: IngestParams, raw_dir: Path, executor: Executor,
                 given: GivenSpill) -> dict[str, SourceRows]:
    """Run each named source's reader over ``raw_dir/<name>/`` (missing files raise first), a
    part at a time: each part's images decoded and hashed on ``executor``, then compacted,
    and what it gives about its faces put aside in ``given``."""
    bad = unknown_sources(params)
    if bad:
        raise ValueError(f"unknown sources {bad}; known: {sorted(params.known())} "
                         "(a labelled image folder is named in ingest.folders)")
    readers = {name: params.reader(name, raw_dir) for name in params.sources}
    for reader in readers.values():
        reader.check()
    sources = {}
    for name, reader in readers.items():
        parts = []
        with progress_bar(f"ingest {name}") as advance:
            for batch in reader.read_parts(advance):
                measure_records(name, batch, executor)
                given.add(given_table(batch.given))
                parts.append(compact(batch))
        sources[name] = gather(parts)
    return sources


#: Images per decoding task.
IMAGES_PER_TASK = 256


def measure_records(source: str, batch: SourceBatch, executor: Executor) -> None:
    """Decode and hash every image the reader left unread, a task of images at a time on the
    executor; fill in each record's size and content hash, or turn it into a reject."""
    unread = [r for r in batch.records if r.image is not None]
    size = IMAGES_PER_TASK  # fixed: a few hundred images are decoded here, not sent to workers
    tasks = (([r.image for r in unread[i:i + size]],) for i in range(0, len(unread), size))
    failed: set[str] = set()
    done = 0
    with progress_bar("ingest: decode and hash", total=len(unread)) as advance:
        for chunk in executor.map(measure_images, tasks):
            for record, measured in zip(unread[done:done + len(chunk)], chunk):
                if measured.reason is not None:
                    batch.rejects.append(Reject(source, record.image.location, measured.reason,
                                                measured.message, "rejected", record.sample_id))
                    failed.add(record.sample_id)
                else:
                    record.width, record.height, record.content_hash = (measured.width, measured.height,
                                                                        measured.content_hash)
                record.image = None
            done += len(chunk)
            advance(len(chunk))
    if failed:
        batch.records = [r for r in batch.records if r.sample_id not in failed]
        for sample_id in failed:
            batch.given.pop(sample_id, None)


def _not_in_taxonomy(source: str, records: pa.Table, taxonomy: Taxonomy) -> list[Reject]:
    """A ``dropped`` reject for each of ``records`` (whose labels have no class)."""
    rows = records.select(["sample_id", "native_label", "source_file", "source_line"]).to_pylist()
    return [Reject(source, r["source_file"] + (f":{r['source_line']}" if r["source_line"] else ""),
                   "not_in_taxonomy",
                   f"label {r['native_label']!r} has no class in the {len(taxonomy)}-class taxonomy",
                   kind="dropped", sample_id=r["sample_id"]) for r in rows]


def _source_table(source: str, records: pa.Table, classes: dict[str, str], taxonomy: Taxonomy) -> pa.Table:
    """One source's records, each native label having a class in ``classes``, as manifest rows."""
    natives = list(classes)
    codes = pc.index_in(records["native_label"], value_set=pa.array(natives, pa.string()))
    n = records.num_rows
    columns = {name: records[name] for name in records.column_names}
    columns.update(source=pa.repeat(source, n), label=pa.array(list(classes.values()), pa.string()).take(codes),
                   label_index=pa.array([taxonomy.index(c) for c in classes.values()], pa.int16()).take(codes),
                   soft_label=pa.nulls(n, SOFT_LABEL_FIELD.type))
    return pa.Table.from_arrays([columns[name] for name in INGEST_SCHEMA.names], schema=INGEST_SCHEMA)


def to_manifest(
    sources: dict[str, SourceRows], taxonomy: Taxonomy
) -> tuple[pa.Table, list[Reject], dict[str, SourceAccount]]:
    """Map native labels to the taxonomy, dropping (and counting) those with no place in it."""
    tables = [INGEST_SCHEMA.empty_table()]
    rejects: list[Reject] = []
    accounts: dict[str, SourceAccount] = {}
    for name, rows in sources.items():
        classes = {native: taxonomy.canonical(name, native, rows.labels)
                   for native in sorted(pc.unique(rows.records["native_label"]).to_pylist())}
        placed = {native: c for native, c in classes.items() if c is not None}
        kept = pc.is_in(rows.records["native_label"], value_set=pa.array(list(placed), pa.string()))
        dropped = _not_in_taxonomy(name, rows.records.filter(pc.invert(kept)), taxonomy)
        rejects.extend(rows.rejects + dropped)
        accounts[name] = SourceAccount(
            seen=rows.seen,
            rejected=dict(Counter(r.reason for r in rows.rejects if r.kind == "rejected")),
            dropped=dict(Counter(r.reason for r in rows.rejects + dropped if r.kind == "dropped")))
        tables.append(_source_table(name, rows.records.filter(kept), placed, taxonomy))
    return pa.concat_tables(tables), rejects, accounts


def count_accepted(table: pa.Table, accounts: dict[str, SourceAccount], taxonomy: Taxonomy) -> None:
    """Fill each account's accepted and per-class counts from the final manifest, and check them."""
    counted = table.group_by(["source", "label"]).aggregate([([], "count_all")]).to_pylist()
    pairs = {(row["source"], row["label"]): row["count_all"] for row in counted}
    for name, account in accounts.items():
        account.classes = {c: pairs[(name, c)] for c in taxonomy.classes if pairs.get((name, c))}
        account.accepted = sum(account.classes.values())
        if not account.balanced:
            raise RuntimeError(f"{name}: accounting does not add up: {account}")


def source_of(sample_id: str, sources: list[str]) -> str:
    """The source a sample id (``<source>-<id>``) comes from; the longest matching name wins."""
    return max((s for s in sources if sample_id.startswith(f"{s}-")), key=len)


def draw_val(sources: dict[str, SourceRows], shares: dict[str, float], seed: int) -> dict[str, dict]:
    """Move ``shares[source]`` of each listed source's train records to val, per native label
    (rounded; labels in sorted order, records in sample-id order), drawn with ``seed``; returns
    what was moved, for ingest.json."""
    drawn = {}
    for name, share in shares.items():
        if name not in sources:
            continue
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        records = sources[name].records
        order = pc.sort_indices(records["sample_id"]).to_numpy()
        train = pc.fill_null(pc.equal(records["split"], "train"), False).to_numpy(zero_copy_only=False)[order]
        labels = records["native_label"].combine_chunks().dictionary_encode()
        codes, names = labels.indices.to_numpy()[order], labels.dictionary.to_pylist()
        moved = np.zeros(records.num_rows, dtype=bool)
        for code in sorted(range(len(names)), key=names.__getitem__):
            rows = order[train & (codes == code)]
            if len(rows):
                moved[rows[rng.choice(len(rows), size=round(share * len(rows)), replace=False)]] = True
        split = pc.if_else(pa.array(moved), pa.scalar("val"), records["split"])
        sources[name].records = records.set_column(records.schema.get_field_index("split"),
                                                   records.schema.field("split"), split)
        drawn[name] = {"share": share, "seed": seed, "moved_to_val": int(moved.sum())}
    return drawn


def record_removals(removed: list[Reject], rejects: list[Reject],
                    accounts: dict[str, SourceAccount]) -> None:
    """Count samples removed after reading (FER+, review) against the source they came from."""
    rejects.extend(removed)
    for r in removed:
        account = accounts[source_of(r.sample_id, list(accounts))]
        counts = account.dropped if r.kind == "dropped" else account.rejected
        counts[r.reason] = counts.get(r.reason, 0) + 1


def relabel_with_ferplus(params: IngestParams, table: pa.Table, raw_dir: Path, out_dir: Path,
                         rejects: list[Reject], accounts: dict[str, SourceAccount],
                         taxonomy: Taxonomy) -> pa.Table:
    """Replace FER2013 labels with FER+ votes as ``ingest.labels`` asks; write the agreement of
    FER2013's labels with FER+'s (FER+'s folders have no FER2013 label to compare)."""
    if params.labels == "fer2013" or "fer2013" not in accounts:
        return table
    if ferplus_folders_read(params, raw_dir):
        votes = read_ferplus_folders(raw_dir / "fer2013")
        table, removed, _report = apply_votes(table, votes, params.labels, taxonomy)
        record_removals(removed, rejects, accounts)
        return table
    csv = raw_dir / FERPLUS_SOURCE / FERPLUS_FILE
    table, removed, report = apply_ferplus(table, csv, params.labels, taxonomy,
                                           fer2013_rows=accounts["fer2013"].seen)
    record_removals(removed, rejects, accounts)
    write_agreement(report, out_dir)
    return table


def write_pixels(sources: dict[str, SourceRows], out_dir: Path) -> dict[str, str]:
    """Save each source's decoded pixels as ``pixels/<source>.npy``; returns the file names."""
    files = {}
    for name, rows in sources.items():
        if rows.pixels is not None:
            path = out_dir / "pixels" / f"{name}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, np.ascontiguousarray(rows.pixels, dtype=np.uint8))
            files[name] = str(path.relative_to(out_dir))
    return files


def run_ingest(params: IngestParams, raw_dir: Path, out_dir: Path,
               corrections: Path | None = None, executor: Executor | None = None) -> IngestResult:
    """Read the sources (their images decoded and hashed on ``executor``, by default a local
    pool), draw val rows where asked, apply corrections.csv (if given and present), and write
    manifest.parquet (shards of sorted sample ids), rejects.parquet, pixels/, given.parquet
    (shards) and ingest.json."""
    check_params(params, raw_dir)
    taxonomy = Taxonomy.of_size(params.taxonomy)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".given-", dir=out_dir) as spill_dir:
        given = GivenSpill(Path(spill_dir))
        with using(executor) as pool:
            sources = read_sources(params, raw_dir, pool, given)
            partition_size = pool.partition_size
        drawn = draw_val(sources, params.val_from_train, params.seed)
        pixel_files = write_pixels(sources, out_dir)
        table, rejects, accounts = to_manifest(sources, taxonomy)
        table = relabel_with_ferplus(params, table, raw_dir, out_dir, rejects, accounts, taxonomy)
        review = CorrectionsReport()
        if corrections is not None:
            table, review = apply_corrections(table, corrections, taxonomy.classes)
            record_removals(review.rejects, rejects, accounts)
        count_accepted(table, accounts, taxonomy)
        write_sharded(table, out_dir / "manifest.parquet", partition_size, order=pc.sort_indices(table["sample_id"]))
        write_table(rejects_table(rejects), out_dir / "rejects.parquet")
        given.write(out_dir / GIVEN_FILE, partition_size, keep=table["sample_id"])
    report = {
        "taxonomy": list(taxonomy.classes),
        "sources": {name: asdict(acc) for name, acc in accounts.items()},
        "val_from_train": drawn,
        "pixel_files": pixel_files,
        "corrections": {"relabelled": review.relabelled, "excluded": review.excluded,
                        "already_right": review.unchanged, "other_sources": review.other_sources},
    }
    (out_dir / "ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    return IngestResult(accounts, rejects, table.num_rows, review)
