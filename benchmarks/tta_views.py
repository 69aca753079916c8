"""Test-time views on a trained model: what averaging shifted faces adds to the flip.

Scores the pipeline's model (``models/``) on the dataset's val and test splits
(``processed/dataset``) with the test-time flip alone and with the flip plus the face moved
1, 2, … pixels up, down, left and right (``evaluate.tta_shift``), and gives each setting's
difference from the flip alone with a paired bootstrap over the faces. Choose the shift on
val; the test split is there to report once.

    .venv/bin/python benchmarks/tta_views.py ROOT --shifts 1,2,3,4
"""

from __future__ import annotations

import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from ferdata.test_time import TestTimeViews, predict
from ferdata.manifest import read_table
from ferdata.train import labelled_images, load_model
from paired_scores import SPLITS, add_split_rows, pipeline_arguments


def main() -> None:
    parser = pipeline_arguments(__doc__)
    parser.add_argument("--shifts", default="1,2,3,4", help="comma-separated pixels")
    args = parser.parse_args()
    shifts = [int(s) for s in args.shifts.split(",")]

    net, classes = load_model(args.root / "models")
    path = args.root / "processed" / "dataset" / "manifest.parquet"
    table = Table(title=f"test-time views: {args.root / 'models'} on {path.parent}")
    for column in ("split", "faces", "views", "accuracy", "vs flip", "macro recall", "vs flip"):
        table.add_column(column)
    settings = {"flip only": TestTimeViews(flip=True)} | {
        f"flip + {s}-px shifts": TestTimeViews(flip=True, shift=s) for s in shifts}
    manifest = read_table(path)
    for split in SPLITS:
        rows = manifest.filter(pc.equal(manifest["split"], split))
        images, labels = labelled_images(rows, classes, path)
        guesses = {name: predict(net, images, views)[1].argmax(axis=1) for name, views in settings.items()}
        add_split_rows(table, split, labels, guesses, classes, args.resamples)
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
