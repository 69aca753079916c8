"""The bias report: its tables and figures, and a warning exactly where a class hides in one source."""

import json

import pandas as pd
import pytest
from fiftyone_fixture import predictions_table, set_column
from helpers import synthetic_dataset
from PIL import Image

from ferdata.bias import BiasParams, find_confounds, write_bias_report
from ferdata.manifest import write_table

FIGURES = ["bias_alignment.png", "bias_brightness_contrast.png", "bias_composition.png",
           "bias_recall.png", "bias_subjects.png"]


def _dataset_dir(tmp_path, table):
    write_table(table, tmp_path / "dataset" / "manifest.parquet")
    return tmp_path / "dataset"


def _surprise_mostly_from_ckplus(table):
    """Every surprise face from CK+, which otherwise gives few faces: a source confound."""
    rows = table.select(["label", "source"]).to_pylist()
    sources = []
    for i, r in enumerate(rows):
        if r["label"] == "surprise":
            sources.append("ckplus" if i % 10 else "fer2013")  # 90% CK+
        else:
            sources.append("fer2013" if i % 5 else "ckplus")
    return set_column(table, "source", sources)


def test_balanced_mix_writes_every_section_and_figure_without_warning(tmp_path):
    table = synthetic_dataset({"train": [20] * 7, "test": [6] * 7})
    dataset = _dataset_dir(tmp_path, table)
    write_table(predictions_table(table), tmp_path / "predictions.parquet")
    (tmp_path / "eval.json").write_text(json.dumps({"accuracy": 0.93, "per_class": {"angry": 0.9}}))
    report = write_bias_report(dataset, tmp_path / "predictions.parquet", tmp_path / "eval.json",
                               tmp_path / "reports")
    assert report.path == tmp_path / "reports" / "bias.md"
    assert report.confounds == []
    assert sorted(p.name for p in report.figures) == FIGURES
    for figure in report.figures:
        with Image.open(figure) as img:
            assert img.format == "PNG" and img.width > 300
    text = report.path.read_text()
    assert "WARNING" not in text
    for heading in ("## Class x source composition", "## Subjects per class",
                    "## Brightness and contrast by class and source", "## Alignment status by class and source",
                    "## Recall by source and class (test samples)", "## Model"):
        assert heading in text
    assert "- accuracy: 0.93" in text
    assert "| angry | 9 | 9 | 8 | 26 |" in text  # ckplus, fer2013, jaffe, all (train 20 + test 6)
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["bias.md", *FIGURES]


def test_warning_fires_on_a_class_that_comes_mostly_from_a_minority_source(tmp_path):
    table = _surprise_mostly_from_ckplus(synthetic_dataset({"train": [30] * 7}))
    report = write_bias_report(_dataset_dir(tmp_path, table), out_dir=tmp_path / "reports")
    assert [(c.label, c.source) for c in report.confounds] == [("surprise", "ckplus")]
    [warning] = [line for line in report.path.read_text().splitlines() if line.startswith("WARNING")]
    assert warning.startswith("WARNING: 90% of 'surprise' comes from ckplus, which is only 30% of the data")


def test_confound_needs_both_a_dominant_share_of_the_class_and_a_minority_source():
    counts = pd.DataFrame({"fer2013": [90, 10, 80], "ckplus": [10, 85, 20], "jaffe": [0, 5, 0]},
                          index=["happy", "surprise", "sad"])
    found = find_confounds(counts, BiasParams())
    assert [(c.label, c.source) for c in found] == [("surprise", "ckplus")]  # happy: fer2013 is the majority
    assert find_confounds(counts, BiasParams(class_share=0.9)) == []


def test_report_is_deterministic_and_drops_figures_it_no_longer_makes(tmp_path):
    table = synthetic_dataset({"train": [10] * 7, "test": [4] * 7})
    dataset = _dataset_dir(tmp_path, table)
    write_table(predictions_table(table), tmp_path / "predictions.parquet")
    first = write_bias_report(dataset, tmp_path / "predictions.parquet", out_dir=tmp_path / "a")
    second = write_bias_report(dataset, tmp_path / "predictions.parquet", out_dir=tmp_path / "b")
    for x, y in zip([first.path, *first.figures], [second.path, *second.figures]):
        assert x.read_bytes() == y.read_bytes(), x.name
    again = write_bias_report(dataset, out_dir=tmp_path / "a")
    assert not (tmp_path / "a" / "bias_recall.png").exists()
    assert "Recall" not in again.path.read_text()


@pytest.mark.parametrize("missing", ["predictions.parquet", "eval.json"])
def test_a_named_input_that_is_missing_is_an_error_naming_it(tmp_path, missing):
    dataset = _dataset_dir(tmp_path, synthetic_dataset({"train": [3] * 7}))
    kwargs = {"predictions_path": tmp_path / missing} if missing.endswith("parquet") else {"eval_json": tmp_path / missing}
    with pytest.raises(FileNotFoundError, match=missing):
        write_bias_report(dataset, out_dir=tmp_path / "reports", **kwargs)


def test_every_source_gets_its_slices(tmp_path):
    sources = ("fer2013", "ckplus", "jaffe", "raf-db", "affectnet", "lab-photos")
    table = synthetic_dataset({"train": [12] * 7, "test": [6] * 7}, sources=sources)
    write_table(predictions_table(table), tmp_path / "predictions.parquet")
    report = write_bias_report(_dataset_dir(tmp_path, table), tmp_path / "predictions.parquet", None,
                               tmp_path / "reports")
    text = report.path.read_text()
    header = "| class | affectnet | ckplus | fer2013 | jaffe | lab-photos | raf-db |"
    composition, recall = text.split("## Recall by source and class")[0], text.split("## Recall by source")[1]
    assert header in composition and header in recall
    assert "| angry | 3 | 3 | 3 | 3 | 3 | 3 |" in composition  # 18 angry faces, six sources in turn
    assert "| raf-db / aligned |" in text
