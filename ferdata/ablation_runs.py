"""The ablation's finished runs, kept by what made them, so that a run is not trained twice.

A run's key is a hash of everything its answers depend on: the arm's train, val and test
pixels and labels (in their order), the test face ids, the training recipe with its seed,
the online augmentation and class-weight power, the test-time views, the class names, the
source of the modules that train and predict, and the Keras and TensorFlow versions. A run
whose key is already in ``processed/ablation_runs/`` is read from there (``<key>.json``:
its answer per test face and per val face, and how its training went) instead of being trained again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ferdata.arms import ArmData
from ferdata.augment import AugmentParams
from ferdata.test_time import TestTimeViews
from ferdata.files import write_json_atomic
from ferdata.train import TrainParams

import keras  # noqa: E402  (after ferdata.model has chosen the TensorFlow backend)
import tensorflow as tf  # noqa: E402

RUN_FIELDS = ("arm", "seed", "predicted", "val_predicted", "epochs_run", "kept_epoch", "seconds")
#: The modules whose code decides how an arm is trained and how it answers (not the
#: ablation's or the evaluate stage's reports, so that editing them keeps the runs).
TRAINING_CODE = ("arm_training", "augment", "augment_layer", "balance", "batch_norm", "model", "test_time", "train")
PACKAGE = Path(__file__).parent


@cache
def training_code(package: Path = PACKAGE) -> bytes:
    """The source of :data:`TRAINING_CODE` in ``package``, read once per process."""
    return b"".join((package / f"{module}.py").read_bytes() for module in TRAINING_CODE)


def run_key(data: ArmData, test_ids: Sequence[str], recipe: TrainParams, augment: AugmentParams,
            class_weight_power: float, views: TestTimeViews, classes: Sequence[str]) -> str:
    """The hex key of one run: ``data`` trained with ``recipe`` (its seed included)."""
    digest = hashlib.blake2b(digest_size=16)
    settings = {"recipe": asdict(recipe), "augment": asdict(augment), "class_weight_power": class_weight_power,
                "views": asdict(views), "classes": list(classes),
                "versions": {"keras": keras.__version__, "tensorflow": tf.__version__}}
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(training_code())
    digest.update("\n".join(test_ids).encode())
    for array in (data.train.images, data.train.labels, data.val.images, data.val.labels,
                  data.test_images, data.test_present):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class RunStore:
    """``processed/ablation_runs/``: one JSON file per finished run, named by its key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.unusable: list[str] = []  # "<file>: <reason>" for each kept run that could not be used

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def load(self, key: str, faces: int, val_faces: int) -> dict | None:
        """The kept run with ``key`` (answers for ``faces`` test faces and ``val_faces`` val
        faces), or None if there is none or it cannot be used (then the reason is added to
        :attr:`unusable` and the run is trained again)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            run = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            return self._reject(path, f"not readable JSON ({exc})")
        missing = [name for name in RUN_FIELDS if not isinstance(run, dict) or name not in run]
        if missing:
            return self._reject(path, f"missing {missing}")
        for field, count, split in (("predicted", faces, "test"), ("val_predicted", val_faces, "val")):
            answers = run[field]
            if not isinstance(answers, list) or len(answers) != count or not all(isinstance(a, int) for a in answers):
                return self._reject(path, f"'{field}' must be {count} class indexes, one per {split} face")
        return run

    def save(self, key: str, arm: str, seed: int, predicted: np.ndarray, val_predicted: np.ndarray,
             epochs_run: int, kept_epoch: int, seconds: float) -> None:
        """Keep a finished run under its key."""
        write_json_atomic(self.path(key), {
            "arm": arm, "seed": seed, "predicted": [int(p) for p in predicted],
            "val_predicted": [int(p) for p in val_predicted],
            "epochs_run": epochs_run, "kept_epoch": kept_epoch, "seconds": round(seconds, 1)})

    def _reject(self, path: Path, reason: str) -> None:
        self.unusable.append(f"{path}: {reason}; trained again")
        return None
