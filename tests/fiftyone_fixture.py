"""A throwaway FiftyOne database per test process, and generated review inputs.

FiftyOne fixes its database when first connected, so the review tests of one pytest
process share one database in a temporary folder: a user's own database is never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from ferdata.manifest import pixels_to_array, write_table
from ferdata.taxonomy import CLASSES_7

_DATABASE_DIR: list[Path] = []


@pytest.fixture(scope="session")
def fo(tmp_path_factory):
    """The fiftyone module, connected to a database in this test process's temporary folder."""
    from ferdata.fiftyone_env import fiftyone

    if not _DATABASE_DIR:
        _DATABASE_DIR.append(tmp_path_factory.mktemp("fiftyone-db"))
        # neither a user's MongoDB URI nor their FiftyOne config may point the tests elsewhere
        os.environ.pop("FIFTYONE_DATABASE_URI", None)
        os.environ["FIFTYONE_CONFIG_PATH"] = str(_DATABASE_DIR[0] / "config.json")
    return fiftyone(_DATABASE_DIR[0])


def write_dataset_dir(table: pa.Table, root: Path) -> Path:
    """Write a dataset manifest and its PNGs in the class-folder layout; returns ``root``."""
    images = pixels_to_array(table["pixels"])
    for rel, img in zip(table["path"].to_pylist(), images):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(path)
    write_table(table, root / "manifest.parquet")
    return root


def predictions_table(table: pa.Table, seed: int = 0, error_rate: float = 0.1,
                      true_labels: dict[str, str] | None = None) -> pa.Table:
    """Predictions as a trained model makes them: mostly right and confident, a few wrong.

    ``true_labels`` overrides a sample's real class (one the manifest mislabels): the model
    predicts that class, confidently.
    """
    rng = np.random.default_rng(seed)
    true_labels = true_labels or {}
    rows = []
    for sid, split, source, label in zip(*(table[c].to_pylist() for c in ("sample_id", "split", "source", "label"))):
        truth = CLASSES_7.index(true_labels.get(sid, label))
        logits = rng.normal(0.0, 0.5, len(CLASSES_7)).astype(np.float32)
        if sid in true_labels:
            logits[truth] += 6.0
        elif rng.random() < error_rate:  # an honest mistake: unsure between two classes
            other = (truth + 1 + rng.integers(len(CLASSES_7) - 1)) % len(CLASSES_7)
            logits[other] += 1.6
            logits[truth] += 1.2
        else:
            logits[truth] += rng.uniform(2.5, 4.5)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        k = int(probs.argmax())
        rows.append(dict(
            sample_id=sid, split=split, source=source, label=label, label_index=CLASSES_7.index(label),
            predicted=k, predicted_label=CLASSES_7[k], confidence=float(probs[k]),
            correct=k == CLASSES_7.index(label), probabilities=probs.tolist(), logits=logits.tolist(),
        ))
    schema = pa.schema([
        ("sample_id", pa.string()), ("split", pa.string()), ("source", pa.string()),
        ("label", pa.string()), ("label_index", pa.int16()), ("predicted", pa.int16()),
        ("predicted_label", pa.string()), ("confidence", pa.float32()), ("correct", pa.bool_()),
        ("probabilities", pa.list_(pa.float32())), ("logits", pa.list_(pa.float32())),
    ])
    return pa.Table.from_pylist(rows, schema=schema)


def set_column(table: pa.Table, name: str, values: list) -> pa.Table:
    """``table`` with column ``name`` replaced, its type and nullability kept."""
    i = table.schema.get_field_index(name)
    field = table.schema.field(i)
    return table.set_column(i, field, pa.array(values, field.type))


def relabel(table: pa.Table, sample_id: str, label: str) -> pa.Table:
    """The manifest with one sample given another label (a labelling mistake)."""
    labels = [label if s == sample_id else v for s, v in zip(table["sample_id"].to_pylist(), table["label"].to_pylist())]
    table = set_column(table, "label", labels)
    return set_column(table, "label_index", [CLASSES_7.index(v) for v in labels])
