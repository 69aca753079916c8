"""A compact CNN with scikit-learn's classifier face, for out-of-fold probabilities.

:func:`ferdata.oof_model.out_of_fold_probabilities` trains one per fold. It is the train
stage's five-layer network (:mod:`ferdata.model`), fitted for a few epochs with AdamW and a
cosine learning-rate decay on mirrored and unmirrored faces; a face's probabilities are the
mean over it and its mirror image. A few epochs are enough: the network learns what most
labels agree on before it can memorise the wrong ones.
"""

from __future__ import annotations

import numpy as np

from ferdata import model as model_lib
from ferdata.progress import is_terminal
from ferdata.train import EpochLines, make_dataset, seed_everything

import keras  # noqa: E402  (after ferdata.model has chosen the TensorFlow backend)

LEARNING_RATE = 0.002
WEIGHT_DECAY = 0.0001


class CnnClassifier:
    """``fit(images, labels)`` then ``predict_proba(images)``; images are (N, 48, 48) uint8.

    Where no terminal is attached, each epoch prints a line under ``label``; its time left
    counts ``later_epochs`` more (the folds still to come).
    """

    def __init__(self, epochs: int, batch_size: int, seed: int, label: str = "label issues",
                 later_epochs: int = 0) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.seed = seed
        self.label = label
        self.later_epochs = later_epochs

    def fit(self, images: np.ndarray, labels: np.ndarray) -> CnnClassifier:
        """Train a fresh network on ``images`` with class labels ``labels`` (any integers)."""
        self.classes_ = np.unique(labels)
        targets = np.searchsorted(self.classes_, labels).astype(np.int32)
        seed_everything(self.seed, deterministic=True)
        self.net_ = model_lib.five_layer(len(self.classes_))
        steps = self.epochs * -(-len(targets) // self.batch_size)
        model_lib.fit_batch_norm_window(self.net_, steps)
        schedule = keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)
        self.net_.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        flip = keras.layers.RandomFlip("horizontal", seed=self.seed, name="flip")  # a mirror needs no resampling
        batches = make_dataset(np.asarray(images)[..., None], targets, self.batch_size, self.seed, flip)
        lines = [] if is_terminal() else [EpochLines(self.label, self.epochs, self.later_epochs)]
        self.net_.fit(batches, epochs=self.epochs, shuffle=False, verbose=0, callbacks=lines)
        return self

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, classes) probabilities: the mean over each face and its mirror image."""
        batch = model_lib.as_batch(images)
        probs = [model_lib.predict_batches(self.net_, x, 512) for x in (batch, batch[:, :, ::-1])]
        return np.mean(probs, axis=0).astype(np.float64)
