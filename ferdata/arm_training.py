"""One ablation run: a fresh network trained on one arm with one seed, and its answer for
every test face and every val face.

This module and those it trains through (:data:`ferdata.ablation_runs.TRAINING_CODE`) are
the code a kept run's key covers, so an edit to the ablation's report does not retrain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ferdata import model as model_lib
from ferdata.arms import ArmData
from ferdata.augment import online_config
from ferdata.balance import BalanceParams, class_weights
from ferdata.evaluate import EvaluateParams
from ferdata.test_time import predict
from ferdata.train import TrainParams, augmentation_from, fit, kept_row, make_dataset, seed_everything

import keras  # noqa: E402  (after ferdata.model has chosen the TensorFlow backend)


@dataclass
class ArmRun:
    """One arm trained with one seed, and its answer for every test face and every val face."""

    seed: int
    predicted: np.ndarray  # (N,) class index; -1 where the arm has no pixels for the face
    correct: np.ndarray  # (N,) bool; False where the arm has no pixels
    val_predicted: np.ndarray  # (V,) class index of each of the arm's val faces, in ``data.val`` order
    epochs_run: int
    kept_epoch: int
    seconds: float  # of training, when the run was trained (also when it is reused)
    key: str = ""  # its key in processed/ablation_runs/
    reused: bool = False  # read from processed/ablation_runs/ rather than trained here


def train_and_predict(data: ArmData, params: TrainParams, evaluate: EvaluateParams, balance: BalanceParams,
                      classes: Sequence[str], test_labels: np.ndarray) -> ArmRun:
    """Train a fresh network on ``data.train`` (validating on ``data.val``) with ``params``,
    augmenting and weighting classes as the balance stage says, and predict each test face
    the arm has pixels for, and each of its val faces."""
    clock = time.perf_counter()
    seed_everything(params.seed, params.deterministic)
    augment = augmentation_from(online_config(balance.augment), params.seed) if params.augment else None
    weights = None
    if params.class_weights:
        counts = np.bincount(data.train.labels, minlength=len(classes))
        by_index = class_weights(dict(zip(classes, counts.tolist())), classes, balance.class_weight_power)["by_index"]
        weights = {k: float(by_index.get(str(k), 1.0)) for k in range(len(classes))}
    net = model_lib.build_model(params.model, len(classes))
    history, _ = fit(net, make_dataset(data.train.images[..., None], data.train.labels, params.batch_size,
                                       params.seed, augment),
                     make_dataset(data.val.images[..., None], data.val.labels, params.batch_size), params,
                     weights, label=f"ablate {data.name} seed {params.seed}")
    predicted = np.full(len(test_labels), -1, np.int64)
    _, probabilities = predict(net, data.test_images[data.test_present], evaluate.views, evaluate.batch_size)
    predicted[data.test_present] = probabilities.argmax(axis=1)
    _, val_probabilities = predict(net, data.val.images, evaluate.views, evaluate.batch_size)
    kept = kept_row(history, params)
    keras.backend.clear_session()
    return ArmRun(params.seed, predicted, predicted == test_labels, val_probabilities.argmax(axis=1),
                  len(history), kept["epoch"], time.perf_counter() - clock)
