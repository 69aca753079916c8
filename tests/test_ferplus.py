"""FER+ relabelling on a hand-written fer2013new.csv: labels, drops, soft labels, agreement."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pytest

from ferdata.ferplus import (
    OUTCOMES, FerplusError, apply_ferplus, majority_labels, read_ferplus, write_agreement,
)
from ferdata.manifest import INGEST_SCHEMA
from ferdata.sources.base import MissingSourceError
from ferdata.taxonomy import CLASSES_7, Taxonomy

HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
# Vote columns: neutral happiness surprise sadness anger disgust fear contempt unknown NF
# (FER2013 code, FER+ line); FER2013 codes: 0 angry 1 disgust 2 fear 3 happy 4 sad 5 surprise 6 neutral
ROWS = [
    (3, "Training,fer0000000.png,2,8,0,0,0,0,0,0,0,0"),  # 0: happy 8 of 10
    (0, "Training,fer0000001.png,1,0,0,0,5,3,1,0,0,0"),  # 1: strays zeroed -> anger 5 of 8
    (4, "Training,fer0000002.png,4,0,0,4,0,0,2,0,0,0"),  # 2: neutral = sadness 4: tie, no majority
    (6, "Training,fer0000003.png,4,0,0,3,3,0,0,0,0,0"),  # 3: neutral 4 of 10: plurality only
    (2, "PublicTest,fer0000004.png,2,0,0,0,0,0,2,0,0,6"),  # 4: not a face
    (5, "PublicTest,fer0000005.png,0,0,4,0,0,0,2,0,4,0"),  # 5: unknown ties the top: unknown
    (3, "PrivateTest,,0,10,0,0,0,0,0,0,0,0"),  # 6: no image name
    (6, "Training,fer0000007.png,4,0,0,0,0,0,0,6,0,0"),  # 7: contempt 6 of 10
    (1, "Training,fer0000008.png,1,1,1,1,1,1,1,1,1,1"),  # 8: only single votes
    (4, "Training,fer0000009.png,0,0,6,0,0,0,4,0,0,0"),  # 9: surprise 6 (FER2013 says sad)
    (0, "Training,fer0000010.png,5,5,0,0,0,0,0,0,0"),  # 10: one field short
    (2, "Training,fer0000011.png,2.5,7,0,0,0,0,0,0,0,0"),  # 11: not a whole number
    (None, ""),  # a blank line: skipped, not a data row
    (3, "Training,fer0000012.png,0,10,0,0,0,0,0,0,0,0"),  # 12: its FER2013 row was rejected
    (3, "PublicTest,fer0000013.png,0,10,0,0,0,0,0,0,0,0"),  # 13: Usage differs from FER2013's
    (3, "Training,fer0000014.png,2,6,0,0,0,0,0,2,0,0"),  # 14: happy 6, contempt 2, neutral 2
]
IN_MANIFEST = [r for r in range(15) if r != 12]


@pytest.fixture
def ferplus_csv(tmp_path):
    path = tmp_path / "fer2013new.csv"
    path.write_text(HEADER + "\n" + "\n".join(line for _, line in ROWS) + "\n")
    return path


def fer2013_codes() -> list[int]:
    return [code for code, _ in ROWS if code is not None]


def manifest() -> pa.Table:
    """FER2013 rows as ingest would have them (row 12 missing, row 13 in train), plus a CK+ sample."""
    usage = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
    data_rows = [line for code, line in ROWS if code is not None]
    codes = fer2013_codes()
    rows = []
    for r in IN_MANIFEST:
        split = "train" if r == 13 else usage.get(data_rows[r].split(",")[0], "train")
        rows.append(dict(
            sample_id=f"fer2013-{r:06d}", source="fer2013", label=CLASSES_7[codes[r]],
            label_index=codes[r], native_label=str(codes[r]), split=split, source_file="fer2013.csv",
            source_line=r + 2, width=48, height=48, content_hash=f"{r:040x}"))
    rows.append(dict(sample_id="ckplus-S005_001_00000011", source="ckplus", label="angry", label_index=0,
                     native_label="1", split=None, subject="S005", source_file="x.png", width=640,
                     height=490, content_hash="f" * 40))
    return pa.Table.from_pylist(rows, schema=INGEST_SCHEMA)


def by_id(table: pa.Table) -> dict[str, dict]:
    return {r["sample_id"]: r for r in table.to_pylist()}


def kept_labels(table: pa.Table) -> dict[int, str]:
    return {int(r["sample_id"][-6:]): r["label"] for r in table.to_pylist() if r["source"] == "fer2013"}


def drop_reasons(rejects) -> dict[int, str]:
    return {int(r.sample_id[-6:]): r.reason for r in rejects}


COMMON_DROPS = {4: "ferplus_not_a_face", 5: "ferplus_unknown", 6: "ferplus_no_image",
                8: "ferplus_no_votes", 10: "malformed_row", 11: "bad_vote", 13: "usage_mismatch"}


def test_majority_zeroes_single_votes_and_drops_rows_without_a_majority(ferplus_csv):
    table, rejects, report = apply_ferplus(manifest(), ferplus_csv, "ferplus-majority", Taxonomy.of_size(7),
                                           fer2013_rows=15)
    assert kept_labels(table) == {0: "happy", 1: "angry", 9: "surprise", 14: "happy"}
    assert drop_reasons(rejects) == COMMON_DROPS | {2: "ferplus_no_majority", 3: "ferplus_no_majority",
                                                    7: "not_in_taxonomy"}
    assert len(rejects) == manifest().num_rows - table.num_rows
    assert report.matched == 14 and report.kept == 4 and report.relabelled == 1
    assert report.removed == {"bad_vote": 1, "ferplus_no_image": 1, "ferplus_no_majority": 2,
                              "ferplus_no_votes": 1, "ferplus_not_a_face": 1, "ferplus_unknown": 1,
                              "malformed_row": 1, "not_in_taxonomy": 1, "usage_mismatch": 1}
    assert table["soft_label"].null_count == table.num_rows


def test_rejects_name_the_file_line_and_kind(ferplus_csv):
    _, rejects, _ = apply_ferplus(manifest(), ferplus_csv, "ferplus-majority", Taxonomy.of_size(7))
    found = {int(r.sample_id[-6:]): r for r in rejects}
    assert {r.source for r in rejects} == {"ferplus"}
    assert found[4].location == "fer2013new.csv:6"
    assert found[13].location == "fer2013new.csv:16"  # after the blank line 14
    assert found[10].kind == found[11].kind == found[13].kind == "rejected"
    assert found[4].kind == found[7].kind == "dropped"
    assert "expected 12 comma-separated fields, found 11" in found[10].message
    assert "neutral votes '2.5' is not a whole number" in found[11].message
    assert "contempt" in found[7].message


def test_plurality_keeps_a_single_top_emotion_and_drops_ties(ferplus_csv):
    table, rejects, _ = apply_ferplus(manifest(), ferplus_csv, "ferplus-plurality", Taxonomy.of_size(7))
    assert kept_labels(table) == {0: "happy", 1: "angry", 3: "neutral", 9: "surprise", 14: "happy"}
    assert drop_reasons(rejects) == COMMON_DROPS | {2: "ferplus_tie", 7: "not_in_taxonomy"}


def test_relabelling_keeps_fer2013_native_label_and_other_sources(ferplus_csv):
    table, _, _ = apply_ferplus(manifest(), ferplus_csv, "ferplus-plurality", Taxonomy.of_size(7))
    rows = by_id(table)
    assert rows["fer2013-000009"]["native_label"] == "4"  # FER2013's sad
    assert (rows["fer2013-000009"]["label"], rows["fer2013-000009"]["label_index"]) == ("surprise", 5)
    assert rows["ckplus-S005_001_00000011"] == by_id(manifest())["ckplus-S005_001_00000011"] | {"soft_label": None}


def test_probability_stores_exact_vote_shares_over_the_taxonomy(ferplus_csv):
    table, rejects, _ = apply_ferplus(manifest(), ferplus_csv, "ferplus-probability", Taxonomy.of_size(7))
    soft = {int(r["sample_id"][-6:]): r["soft_label"] for r in table.to_pylist() if r["source"] == "fer2013"}
    expected = {  # angry disgust fear happy sad surprise neutral
        0: [0, 0, 0, 0.8, 0, 0, 0.2],
        1: [5 / 8, 3 / 8, 0, 0, 0, 0, 0],
        3: [0.3, 0, 0, 0, 0.3, 0, 0.4],
        9: [0, 0, 0.4, 0, 0, 0.6, 0],
        14: [0, 0, 0, 0.75, 0, 0, 0.25],  # contempt's votes have no class here
    }
    assert soft.keys() == expected.keys()
    for row, shares in expected.items():
        assert soft[row] == pytest.approx(shares, abs=1e-7), row
    assert kept_labels(table) == {0: "happy", 1: "angry", 3: "neutral", 9: "surprise", 14: "happy"}
    assert drop_reasons(rejects)[2] == "ferplus_tie"
    assert table.schema.field("soft_label").type == pa.list_(pa.float32())


def test_eight_classes_keep_contempt(ferplus_csv):
    table, rejects, _ = apply_ferplus(manifest(), ferplus_csv, "ferplus-probability", Taxonomy.of_size(8))
    rows = by_id(table)
    assert (rows["fer2013-000007"]["label"], rows["fer2013-000007"]["label_index"]) == ("contempt", 7)
    assert rows["fer2013-000007"]["soft_label"] == pytest.approx([0, 0, 0, 0, 0, 0, 0.4, 0.6])
    assert rows["fer2013-000014"]["soft_label"] == pytest.approx([0, 0, 0, 0.6, 0, 0, 0.2, 0.2])
    assert "not_in_taxonomy" not in {r.reason for r in rejects}


def test_agreement_matrix_counts_and_files(ferplus_csv, tmp_path):
    _, _, report = apply_ferplus(manifest(), ferplus_csv, "ferplus-majority", Taxonomy.of_size(7))
    expected = {  # (FER2013 label, outcome): count
        ("happy", "happy"): 2, ("happy", "no_image"): 1, ("happy", "rejected"): 1,
        ("angry", "angry"): 1, ("angry", "rejected"): 1,
        ("sad", "no_majority"): 1, ("sad", "surprise"): 1,
        ("neutral", "no_majority"): 1, ("neutral", "contempt"): 1,
        ("fear", "not_a_face"): 1, ("fear", "rejected"): 1,
        ("surprise", "unknown"): 1, ("disgust", "no_votes"): 1,
    }
    found = {(CLASSES_7[i], OUTCOMES[j]): n for i, row in enumerate(report.agreement)
             for j, n in enumerate(row) if n}
    assert found == expected
    assert report.agreement_rate == pytest.approx(3 / 5)  # rows 0, 1, 14 agree; 7 and 9 do not

    paths = write_agreement(report, tmp_path / "out")
    data = json.loads(paths[0].read_text())
    assert data["agreement"]["sad"]["surprise"] == 1 and data["agreement"]["happy"]["happy"] == 2
    assert sum(sum(row.values()) for row in data["agreement"].values()) == report.matched == 14
    with paths[1].open() as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["fer2013_label", *OUTCOMES]
    assert table[CLASSES_7.index("happy") + 1][OUTCOMES.index("happy") + 1] == "2"
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_majority_labels_for_label_issue_checks(ferplus_csv):
    labels = majority_labels(read_ferplus(ferplus_csv))
    assert labels[:4] == ["happy", "angry", None, None] and labels[9] == "surprise"
    assert labels[7] == "contempt" and labels[10] is None and len(labels) == 15


def test_row_count_mismatch_is_an_error_naming_the_file(ferplus_csv):
    with pytest.raises(FerplusError, match=r"fer2013new.csv: 15 data rows, but fer2013.csv has 35887"):
        apply_ferplus(manifest(), ferplus_csv, "ferplus-majority", Taxonomy.of_size(7), fer2013_rows=35887)


def test_bad_header_missing_file_and_unjoinable_ids(ferplus_csv, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER.replace(",NF", "") + "\n")
    with pytest.raises(FerplusError, match=r"bad.csv:1: the header lacks the column\(s\) NF"):
        read_ferplus(bad)
    with pytest.raises(MissingSourceError, match="raw/ferplus/fer2013new.csv"):
        apply_ferplus(manifest(), tmp_path / "absent.csv", "ferplus-majority", Taxonomy.of_size(7))
    folder_release = manifest().set_column(0, INGEST_SCHEMA.field(0),
                                           pa.array(["fer2013-Training_10118481"] + [f"x{i}" for i in range(14)]))
    with pytest.raises(FerplusError, match="Training_10118481"):
        apply_ferplus(folder_release, ferplus_csv, "ferplus-majority", Taxonomy.of_size(7))
