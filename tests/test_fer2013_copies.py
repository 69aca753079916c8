"""benchmarks/fer2013_copies.py on a generated build: the FER+ verdict on copies whose labels
disagree, against copies that agree and faces without a copy; the rows a CSV repeats."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ferdata.ferplus import COLUMNS, EMOTION_CLASSES, read_ferplus
from ferdata.split import SplitParams, run_split
from split_helpers import aligned_table, distinct_images, fer_rows, write_aligned

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "fer2013_copies.py"
VOTE_COLUMN = {name: column for column, name in EMOTION_CLASSES.items()}


def _script():
    spec = importlib.util.spec_from_file_location("fer2013_copies", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ferplus(path: Path, voted: list[str]) -> Path:
    """fer2013new.csv whose row i gives all ten votes to ``voted[i]``."""
    lines = [",".join(COLUMNS)]
    for i, label in enumerate(voted):
        lines.append(",".join(["Training", f"fer{i:07d}.png",
                               *("10" if c == VOTE_COLUMN[label] else "0" for c in COLUMNS[2:])]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_conflicting_copies_are_judged_on_their_pooled_votes(tmp_path):
    copies = _script()
    rows = fer_rows({"train": [5] * 7, "val": [2] * 7, "test": [2] * 7})
    images = distinct_images(len(rows), seed=6)
    angry, disgust = 1, 7  # one face, labelled angry and disgust
    images[disgust] = images[angry]
    images[4] = images[2]  # one face, both copies angry
    write_aligned(tmp_path / "aligned", aligned_table(rows, images))
    run_split(SplitParams(), tmp_path / "aligned", tmp_path / "dataset")
    voted = [r["label"] for r in rows]
    voted[disgust] = "angry"  # FER+ sees an angry face in both copies
    voted[10] = "happy"  # and disagrees with one face that has no copy
    votes = read_ferplus(_ferplus(tmp_path / "fer2013new.csv", voted))

    faces = copies.faces_by_kind(tmp_path / "dataset")
    assert {kind: len(f) for kind, f in faces.items()} == {
        "conflicting copies": 2, "copies that agree": 2, "faces without a copy": len(rows) - 4}
    assert copies.outcomes(votes, faces["conflicting copies"]) == {"agree": 1, "other": 1}
    assert copies.outcomes(votes, faces["copies that agree"]) == {"agree": 2}
    assert copies.outcomes(votes, faces["faces without a copy"]) == {"agree": len(rows) - 5, "other": 1}


def test_repeated_rows_are_counted_per_usage_and_class(tmp_path):
    csv = tmp_path / "fer2013.csv"
    pixels = [" ".join(["7"] * 2304), " ".join(["9"] * 2304), " ".join(["11"] * 2304)]
    csv.write_text("emotion,pixels,Usage\n"
                   f"5,{pixels[0]},Training\n5,{pixels[0]},Training\n5,{pixels[1]},Training\n"
                   f"0,{pixels[0]},PrivateTest\n0,{pixels[2]},PrivateTest\n")
    total, repeated = _script().repeated_rows(csv)
    assert total == {("Training", "surprise"): 3, ("PrivateTest", "angry"): 2}
    assert repeated == {("Training", "surprise"): 2, ("PrivateTest", "angry"): 1}
