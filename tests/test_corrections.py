"""The corrections loop: App tags -> corrections.csv -> the next manifest, and every way it can go wrong."""

import datetime as dt

import pyarrow as pa
import pytest
from fiftyone_fixture import fo, write_dataset_dir  # noqa: F401
from helpers import synthetic_dataset

from ferdata.corrections import CorrectionsError, apply_corrections, export_corrections, tag_corrections
from ferdata.manifest import INGEST_SCHEMA
from ferdata.review import build_review_dataset
from ferdata.taxonomy import CLASSES_7

DAY1, DAY2 = dt.date(2024, 5, 1), dt.date(2024, 6, 2)


@pytest.fixture(scope="module")
def manifest():
    return synthetic_dataset({"train": [4] * 7, "test": [2] * 7})


@pytest.fixture(scope="module")
def review(fo, manifest, tmp_path_factory):  # noqa: F811
    root = write_dataset_dir(manifest, tmp_path_factory.mktemp("corrections") / "dataset")
    return build_review_dataset("corrections-test", root)


@pytest.fixture
def dataset(review, manifest):
    """The review dataset with only its split tags, as fresh from a build."""
    review.set_values("tags", [[s] for s in review.values("split")])
    return review


def tag(dataset, sample_id, *tags):
    """Tag one sample as an annotator does in the App."""
    sample = dataset.match({"sample_id": sample_id}).first()
    sample.tags.extend(tags)
    sample.save()


def known(manifest):
    return set(manifest["sample_id"].to_pylist())


def row(table, sample_id):
    rows = [r for r in table.select(["sample_id", "label", "label_index", "native_label"]).to_pylist()
            if r["sample_id"] == sample_id]
    return rows[0] if rows else None


def test_round_trip_relabels_and_excludes_in_the_next_manifest(dataset, manifest, tmp_path):
    tag(dataset, "fer2013-000000", "relabel:happy", "reviewed")  # an angry face, really happy
    tag(dataset, "ckplus-000001", "exclude")
    tag(dataset, "jaffe-000002", "reviewed")  # looked at, label fine
    path = tmp_path / "corrections.csv"
    result = export_corrections(dataset, path, known(manifest), CLASSES_7, today=DAY1)
    assert (result.added, result.total) == (2, 2)
    assert path.read_text() == ("sample_id,action,new_label,when\n"
                                "ckplus-000001,exclude,,2024-05-01\n"
                                "fer2013-000000,relabel,happy,2024-05-01\n")

    table, report = apply_corrections(manifest, path, CLASSES_7)
    assert row(table, "fer2013-000000") == {"sample_id": "fer2013-000000", "label": "happy",
                                            "label_index": 3, "native_label": "0"}
    assert row(table, "ckplus-000001") is None
    assert table.num_rows == manifest.num_rows - 1
    assert table.schema == manifest.schema
    assert (report.relabelled, report.excluded, report.unchanged) == (1, 1, 0)
    [reject] = report.rejects
    assert (reject.kind, reject.reason, reject.sample_id, reject.source) == \
        ("dropped", "excluded_by_review", "ckplus-000001", "ckplus")
    assert reject.location == f"{path}:2"


def test_export_keeps_dates_of_unchanged_decisions_and_merges_with_the_file(dataset, manifest, tmp_path):
    path = tmp_path / "corrections.csv"
    path.write_text("sample_id,action,new_label,when\njaffe-000005,relabel,sad,2024-01-09\n")
    tag(dataset, "fer2013-000003", "relabel:sad")
    export_corrections(dataset, path, known(manifest), CLASSES_7, today=DAY1)
    first = path.read_bytes()
    result = export_corrections(dataset, path, known(manifest), CLASSES_7, today=DAY2)
    assert path.read_bytes() == first
    assert (result.added, result.changed, result.unchanged, result.total) == (0, 0, 1, 2)

    dataset.untag_samples("relabel:sad")
    tag(dataset, "fer2013-000003", "relabel:fear")  # the annotator changed their mind
    result = export_corrections(dataset, path, known(manifest), CLASSES_7, today=DAY2)
    assert result.changed == 1
    assert path.read_text().splitlines()[1:] == ["fer2013-000003,relabel,fear,2024-06-02",
                                                 "jaffe-000005,relabel,sad,2024-01-09"]


def test_conflicting_and_unknown_tags_stop_the_export_listing_every_problem(dataset, manifest, tmp_path):
    path = tmp_path / "corrections.csv"
    path.write_text("sample_id,action,new_label,when\n")
    tag(dataset, "fer2013-000000", "relabel:sad", "relabel:fear")
    tag(dataset, "ckplus-000001", "relabel:happy", "exclude")
    tag(dataset, "jaffe-000002", "relabel:contempt")  # not in the 7-class taxonomy
    tag(dataset, "fer2013-000003", "exclude")  # fine on its own
    tag(dataset, "ckplus-000004", "exclude")  # no longer in the manifest
    with pytest.raises(CorrectionsError) as err:
        export_corrections(dataset, path, known(manifest) - {"ckplus-000004"}, CLASSES_7, today=DAY1)
    message = str(err.value)
    assert "4 problem(s)" in message
    assert "fer2013-000000: conflicting tags relabel:fear, relabel:sad" in message
    assert "ckplus-000001: conflicting tags relabel:happy, exclude" in message
    assert "jaffe-000002: unknown class in relabel:contempt" in message
    assert "ckplus-000004: tagged exclude but is not in the dataset manifest or dropped.parquet" in message
    assert "fer2013-000003" not in message
    assert path.read_text() == "sample_id,action,new_label,when\n"  # nothing written


def test_tags_are_read_case_insensitively_and_notes_ignored():
    tagged = [("a", ["Relabel:Happy ", "reviewed"]), ("b", ["EXCLUDE"]), ("c", ["reviewed", "blurry"])]
    got = tag_corrections(tagged, {"a", "b", "c"}, CLASSES_7, "2024-05-01")
    assert [(c.sample_id, c.action, c.new_label) for c in got] == [("a", "relabel", "happy"), ("b", "exclude", "")]


def test_bad_lines_in_the_file_are_all_reported_with_file_and_line(manifest, tmp_path):
    path = tmp_path / "corrections.csv"
    path.write_text("sample_id,action,new_label,when\n"
                    "fer2013-000000,relabel,joy,2024-05-01\n"
                    "fer2013-000003,drop,,2024-05-01\n"
                    "fer2013-000000,exclude,,2024-05-01\n"
                    "ckplus-000001,exclude,,yesterday\n"
                    "jaffe-000002,exclude\n")
    with pytest.raises(CorrectionsError) as err:
        apply_corrections(manifest, path, CLASSES_7)
    assert err.value.problems == [
        f"{path}:2: unknown class 'joy'; classes are {', '.join(CLASSES_7)}",
        f"{path}:3: action must be relabel or exclude, not 'drop'",
        f"{path}:4: fer2013-000000 already corrected on line 2",
        f"{path}:5: when must be an ISO date (YYYY-MM-DD), not 'yesterday'",
        f"{path}:6: expected 4 fields, got 2",
    ]


def test_ids_missing_from_the_manifest_are_errors_unless_their_source_was_not_ingested(manifest, tmp_path):
    path = tmp_path / "corrections.csv"
    path.write_text("sample_id,action,new_label,when\n"
                    "affectnet-000001,exclude,,2024-05-01\n"
                    "fer2013-999999,relabel,sad,2024-05-01\n")
    with pytest.raises(CorrectionsError, match=rf"{path}:3: fer2013-999999 is not in the manifest"):
        apply_corrections(manifest, path, CLASSES_7)
    path.write_text("sample_id,action,new_label,when\naffectnet-000001,exclude,,2024-05-01\n")
    table, report = apply_corrections(manifest, path, CLASSES_7)
    assert table.equals(manifest)
    assert report.other_sources == 1


def test_no_file_changes_nothing_and_ingest_manifests_work_too(manifest, tmp_path):
    ingest = manifest.select(INGEST_SCHEMA.names).cast(INGEST_SCHEMA)
    table, report = apply_corrections(ingest, tmp_path / "corrections.csv", CLASSES_7)
    assert table.equals(ingest) and report.relabelled == report.excluded == 0

    path = tmp_path / "corrections.csv"
    path.write_text("sample_id,action,new_label,when\nfer2013-000000,relabel,angry,2024-05-01\n"
                    "jaffe-000002,relabel,sad,2024-05-01\n")
    table, report = apply_corrections(ingest, path, CLASSES_7)
    assert table.schema == INGEST_SCHEMA
    assert (report.relabelled, report.unchanged) == (1, 1)  # fer2013-000000 was angry already
    assert pa.compute.sum(pa.compute.not_equal(table["label"], ingest["label"])).as_py() == 1
