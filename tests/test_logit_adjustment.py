"""benchmarks/logit_adjustment.py: the evaluate stage's answers with tau * log w taken off
the logits, scored per setting against the model as it is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ferdata.taxonomy import CLASSES_7

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "logit_adjustment.py"
DISGUST, HAPPY = CLASSES_7.index("disgust"), CLASSES_7.index("happy")


def _pipeline(root: Path) -> None:
    """A model that over-answers disgust (weight 10, log w = 2.3): on 6 of the 10 happy faces
    disgust's logit leads happy's by 1, which taking off half of log w or more undoes; the 4
    disgust faces lead by 3, which even all of it does not."""
    (root / "models").mkdir(parents=True)
    (root / "models" / "classes.json").write_text(json.dumps({"classes": list(CLASSES_7)}))
    (root / "processed" / "balanced").mkdir(parents=True)
    weights = {str(k): 10.0 if k == DISGUST else 1.0 for k in range(len(CLASSES_7))}
    (root / "processed" / "balanced" / "class_weights.json").write_text(json.dumps({"by_index": weights}))
    labels, logits = [], []
    for label, lead in [(HAPPY, 1.0)] * 6 + [(HAPPY, -1.0)] * 4 + [(DISGUST, 3.0)] * 4:
        row = np.zeros(len(CLASSES_7))
        row[HAPPY], row[DISGUST] = 2.0, 2.0 + lead
        labels.append(label)
        logits.append(row.tolist())
    table = pa.table({"split": ["val"] * len(labels), "label_index": labels, "logits": logits})
    pq.write_table(table, root / "processed" / "predictions.parquet")


def test_taking_the_weights_off_the_logits_gives_back_the_faces_they_tipped(tmp_path):
    _pipeline(tmp_path)
    output = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--taus", "0.25,0.5,1",
                             "--resamples", "50"], capture_output=True, text=True, check=True).stdout
    rows = {r[2].strip(): r for r in (line.split("│")[1:-1] for line in output.splitlines() if line.startswith("│"))}
    assert list(rows) == ["0", "0.25", "0.5", "1"]  # val only: the file has no test rows
    accuracy = {tau: row[3].strip() for tau, row in rows.items()}
    assert accuracy == {"0": f"{8 / 14:.2%}", "0.25": f"{8 / 14:.2%}", "0.5": "100.00%", "1": "100.00%"}
    disgust_recall = 7 + CLASSES_7.index("disgust")  # the per-class columns follow the seven score columns
    assert {row[disgust_recall].strip() for row in rows.values()} == {"100.0"}
    assert rows["0"][4].strip() == "–" and rows["1"][4].strip().startswith("+42.86")
