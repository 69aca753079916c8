"""The ingest stage end to end on generated raw data: accounting, ids, strict mode, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ferdata.cli import app
from ferdata.given import read_given
from ferdata.ingest import IngestParams, run_ingest
from ferdata.sample import write_sample
from ferdata.sources.affectnet import AffectNet
from ferdata.sources.base import ItemSource
from ferdata.sources.rafdb import RAFDB

runner = CliRunner()


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "raw"
    write_sample(out, fer2013_rows=120, ckplus_subjects=12, jaffe_subjects=1, seed=0)
    return out


@pytest.fixture
def raw_copy(raw, tmp_path) -> Path:
    shutil.copytree(raw, tmp_path / "raw")
    return tmp_path / "raw"


def test_every_raw_item_is_accounted_for(raw, tmp_path):
    result = run_ingest(IngestParams(), raw, tmp_path / "interim")
    manifest = pq.read_table(tmp_path / "interim" / "manifest.parquet").to_pandas()
    rejects = pq.read_table(tmp_path / "interim" / "rejects.parquet").to_pandas()
    for name, acc in result.accounts.items():
        accepted = (manifest.source == name).sum()
        refused = (rejects.source == name).sum()
        assert acc.accepted == accepted and acc.seen == accepted + refused
    assert result.accounts["fer2013"].seen == 120
    # the generator's contempt sequences have no place in 7 classes: dropped, with a reason
    assert result.accounts["ckplus"].dropped.get("not_in_taxonomy", 0) > 0
    assert manifest.sample_id.is_unique


def test_manifest_ids_labels_and_pixels(raw, tmp_path):
    run_ingest(IngestParams(), raw, tmp_path / "interim")
    m = pq.read_table(tmp_path / "interim" / "manifest.parquet").to_pandas()
    fer = m[m.source == "fer2013"]
    assert fer.sample_id.iloc[0] == "fer2013-000000" and set(fer.split) == {"train", "val", "test"}
    assert m[m.source == "ckplus"].sample_id.str.fullmatch(r"ckplus-S\d{3}_\d{3}_\d{8}").all()
    assert m[m.source == "jaffe"].sample_id.str.fullmatch(r"jaffe-[A-Z]{2}\.[A-Z]{2}\d\.\d+").all()
    assert (m.label_index == m.label.map(["angry", "disgust", "fear", "happy", "sad",
                                          "surprise", "neutral"].index)).all()
    pixels = np.load(tmp_path / "interim" / "pixels" / "fer2013.npy")
    assert pixels.shape == (120, 48, 48) and pixels.dtype == np.uint8
    assert fer.pixels_row.tolist() == list(range(120))


def test_two_ingests_write_identical_manifests(raw, tmp_path):
    for name in ("a", "b"):
        run_ingest(IngestParams(), raw, tmp_path / name)
    a, b = (pq.read_table(tmp_path / n / "manifest.parquet") for n in ("a", "b"))
    assert a.equals(b)


def test_eight_class_taxonomy_keeps_contempt(raw, tmp_path):
    result = run_ingest(IngestParams(taxonomy=8), raw, tmp_path / "interim")
    assert result.accounts["ckplus"].classes.get("contempt", 0) > 0
    assert "not_in_taxonomy" not in result.accounts["ckplus"].dropped


def test_bad_row_is_reported_with_file_and_line_and_strict_fails(raw_copy, tmp_path):
    csv = raw_copy / "fer2013" / "fer2013.csv"
    lines = csv.read_text().splitlines()
    lines[5] = "3," + " ".join(["7"] * 2303) + ",Training"  # one pixel short, line 6
    csv.write_text("\n".join(lines) + "\n")
    args = ["ingest", "--raw-dir", str(raw_copy), "--out", str(tmp_path / "out"),
            "--params", str(Path(__file__).parent.parent / "params.yaml")]
    lenient = runner.invoke(app, args)
    assert lenient.exit_code == 0, lenient.output
    assert "fer2013.csv:6" in lenient.output and "bad_pixel_count" in lenient.output
    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 1 and "strict mode: 1 rejected" in strict.output


def test_missing_source_names_the_expected_path(tmp_path):
    (tmp_path / "raw").mkdir()
    result = runner.invoke(app, ["ingest", "--raw-dir", str(tmp_path / "raw"), "--sources", "jaffe",
                                 "--params", str(Path(__file__).parent.parent / "params.yaml")])
    assert result.exit_code == 2 and str(tmp_path / "raw" / "jaffe") in result.output


def test_unknown_source_is_refused(raw, tmp_path):
    with pytest.raises(ValueError, match="unknown sources.*sfew.*ingest.folders"):
        run_ingest(IngestParams(sources=["sfew"]), raw, tmp_path / "interim")


def test_affectnet_val_is_drawn_from_training_rows_seeded_and_recorded(raw, tmp_path):
    def ingest(seed: int, name: str) -> tuple[dict, dict]:
        run_ingest(IngestParams(sources=["affectnet"], seed=seed), raw, tmp_path / name)
        m = pq.read_table(tmp_path / name / "manifest.parquet").to_pandas()
        report = json.loads((tmp_path / name / "ingest.json").read_text())
        return m.groupby("split").sample_id.apply(set).to_dict(), report

    splits, report = ingest(42, "a")
    codes = [line.split(",")[6] for line in (raw / "affectnet" / "validation.csv").read_text().splitlines()[1:]]
    assert len(splits["test"]) == sum(c != "7" for c in codes)  # validation.csv less contempt (7 classes)
    moved = len(splits["val"])
    assert report["val_from_train"] == {"affectnet": {"share": 0.1, "seed": 42, "moved_to_val": moved}}
    assert 0.05 <= len(splits["val"]) / (len(splits["val"]) + len(splits["train"])) <= 0.15
    again, _ = ingest(42, "b")
    other, _ = ingest(7, "c")
    assert again == splits and other["val"] != splits["val"]
    assert other["val"] | other["train"] == splits["val"] | splits["train"]


def test_given_boxes_landmarks_and_pre_aligned_flags_are_kept_for_align(raw, tmp_path):
    params = IngestParams(sources=["raf-db", "affectnet", "jaffe"], raf_db={"images": "aligned"})
    run_ingest(params, raw, tmp_path / "interim")
    given = read_given(tmp_path / "interim" / "given.parquet")
    manifest = pq.read_table(tmp_path / "interim" / "manifest.parquet").to_pandas()
    by_source = manifest.groupby("source").sample_id.apply(set)
    assert set(given) == by_source["raf-db"] | by_source["affectnet"]
    assert all(given[i].prealigned and given[i].box is None for i in by_source["raf-db"])
    some = sorted(by_source["affectnet"])[0]
    assert given[some].landmarks.shape == (68, 2) and len(given[some].box) == 4
    affect = manifest[manifest.source == "affectnet"]
    assert affect.valence.between(-1, 1).all() and manifest[manifest.source != "affectnet"].valence.isna().all()


def test_large_sources_read_a_few_rows_at_a_time_give_the_same_files(raw_copy, tmp_path, monkeypatch):
    csv = raw_copy / "affectnet" / "training.csv"
    lines = csv.read_text().splitlines()
    fields = lines[3].split(",")
    lines[3] = ",".join([fields[0], "x", *fields[2:]])  # a bad box: a reject in an early part
    csv.write_text("\n".join(lines) + "\n")
    image = raw_copy / "affectnet" / "Manually_Annotated_Images" / lines[-1].split(",")[0]
    image.unlink()  # a missing image: a reject found while measuring the last part
    params = IngestParams(sources=["affectnet", "raf-db", "jaffe"], raf_db={"images": "aligned"})
    run_ingest(params, raw_copy, tmp_path / "whole")
    monkeypatch.setattr(ItemSource, "part_rows", 7)
    assert len(list(AffectNet(raw_copy / "affectnet").read_parts())) > 3
    assert len(list(RAFDB(raw_copy / "raf-db", images="aligned").read_parts())) > 3
    run_ingest(params, raw_copy, tmp_path / "parts")
    written = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file())
    assert {"manifest.parquet/part-00000.parquet", "rejects.parquet", "given.parquet/part-00000.parquet"} <= set(map(str, written))
    for rel in written:
        assert (tmp_path / "parts" / rel).read_bytes() == (tmp_path / "whole" / rel).read_bytes(), rel
    reasons = set(pq.read_table(tmp_path / "parts" / "rejects.parquet")["reason"].to_pylist())
    assert {"bad_box", "missing_image"} <= reasons


def test_a_bad_affectnet_row_is_named_and_strict_fails(raw_copy, tmp_path):
    csv = raw_copy / "affectnet" / "training.csv"
    lines = csv.read_text().splitlines()
    fields = lines[3].split(",")
    fields[5] = fields[5].rsplit(";", 2)[0]  # 67 landmarks
    lines[3] = ",".join(fields)
    csv.write_text("\n".join(lines) + "\n")
    args = ["ingest", "--raw-dir", str(raw_copy), "--out", str(tmp_path / "out"),
            "--sources", "affectnet,raf-db", "--params", str(Path(__file__).parent.parent / "params.yaml")]
    lenient = runner.invoke(app, args)
    assert lenient.exit_code == 0, lenient.output
    assert "affectnet/training.csv:4: facial_landmarks holds 134 numbers" in lenient.output
    strict = runner.invoke(app, [*args, "--strict"])
    assert strict.exit_code == 1 and "strict mode: 1 rejected" in strict.output


def test_ferplus_majority_relabels_fer2013_and_keeps_the_account(raw_copy, tmp_path):
    usages = [line.rsplit(",", 1)[1] for line in
              (raw_copy / "fer2013" / "fer2013.csv").read_text().splitlines()[1:]]
    rows = ["Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"]
    for i, usage in enumerate(usages):
        votes = "0,0,0,0,0,0,0,0,0,10" if i == 0 else "0,8,2,0,0,0,0,0,0,0"  # row 0: not a face
        rows.append(f"{usage},fer{i:07d}.png,{votes}")
    (raw_copy / "ferplus" / "fer2013new.csv").write_text("\n".join(rows) + "\n")
    result = run_ingest(IngestParams(labels="ferplus-majority"), raw_copy, tmp_path / "interim")
    fer = result.accounts["fer2013"]
    assert fer.dropped == {"ferplus_not_a_face": 1} and fer.balanced
    assert fer.classes == {"happy": 119}
    m = pq.read_table(tmp_path / "interim" / "manifest.parquet").to_pandas()
    assert "fer2013-000000" not in set(m.sample_id)
    assert (tmp_path / "interim" / "ferplus_agreement.png").exists()


def test_ferplus_mode_without_its_file_stops_before_reading(raw_copy, tmp_path):
    shutil.rmtree(raw_copy / "ferplus")
    with pytest.raises(FileNotFoundError, match="ferplus/fer2013new.csv"):
        run_ingest(IngestParams(labels="ferplus-majority"), raw_copy, tmp_path / "interim")


def test_generated_ferplus_votes_drop_doubtful_and_blank_faces(raw, tmp_path):
    result = run_ingest(IngestParams(labels="ferplus-majority"), raw, tmp_path / "interim")
    dropped = result.accounts["fer2013"].dropped
    assert dropped.get("ferplus_not_a_face") == 1 and dropped.get("ferplus_no_majority", 0) > 0
    assert (tmp_path / "interim" / "ferplus_agreement.csv").exists()
