"""Undoing the class weights after training: what it does to accuracy and the rare classes.

A model trained with class weights w leans towards the classes they favour, by about
log w in its logits. This scores the evaluate stage's answers
(``processed/predictions.parquet``) with ``tau * log w`` taken off each face's logits
(``processed/balanced/class_weights.json``; tau 0 is the model as it is, 1 undoes the
weights fully) and gives each setting's difference from tau 0 with a paired bootstrap over
the faces. Choose on val; the test split is there to report once.

    .venv/bin/python benchmarks/logit_adjustment.py ROOT --taus 0.25,0.5,0.75,1
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from ferdata.layout import Layout
from ferdata.manifest import read_table
from ferdata.train import CLASS_WEIGHTS_FILE, CLASSES_FILE, read_class_weights
from paired_scores import SPLITS, add_split_rows, pipeline_arguments


def main() -> None:
    parser = pipeline_arguments(__doc__)
    parser.add_argument("--taus", default="0.25,0.5,0.75,1", help="comma-separated shares of log w to take off")
    args = parser.parse_args()
    taus = [float(t) for t in args.taus.split(",")]

    layout = Layout(args.root)
    classes = tuple(json.loads((layout.models / CLASSES_FILE).read_text())["classes"])
    weights = read_class_weights(layout.balanced / CLASS_WEIGHTS_FILE, classes)
    log_weights = np.log([weights[k] for k in range(len(classes))])
    predictions = read_table(layout.predictions)
    table = Table(title=f"class weights taken off the logits: {layout.predictions}")
    for column in ("split", "faces", "tau", "accuracy", "vs tau 0", "macro recall", "vs tau 0", *classes):
        table.add_column(column)
    for split in SPLITS:
        rows = predictions.filter(pc.equal(predictions["split"], split))
        if rows.num_rows == 0:
            continue
        labels = rows["label_index"].to_numpy().astype(np.int64)
        logits = np.stack(rows["logits"].to_numpy(zero_copy_only=False))
        guesses = {f"{tau:g}": (logits - tau * log_weights).argmax(axis=1) for tau in [0.0, *taus]}
        add_split_rows(table, split, labels, guesses, classes, args.resamples, per_class=True)
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
