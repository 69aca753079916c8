"""The compact Keras CNNs the train stage fits, and views of a trained model.

Every model takes (48, 48, 1) images in the 0..255 range (rescaled inside the model) and
ends with three named layers the evaluate stage and the review rely on:

* ``features``: the penultimate representation (embeddings for FiftyOne);
* ``logits``: the dense layer before softmax;
* ``probabilities``: its softmax, the model's output.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI or newer;
# elsewhere training takes 2.2 times the CPU time without them (benchmarks/bench_train.py).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

from ferdata.augment_layer import FaceAugmentation  # noqa: E402
from ferdata.batch_norm import FusedBatchNormalization  # noqa: E402
from ferdata.manifest import IMAGE_SIZE  # noqa: E402


class _FreshNetworkRetracing(logging.Filter):
    """Drops TensorFlow's advice against frequent retracing: ablate and label-issues build a
    fresh network per run on purpose, and each traces its own predict function."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(_FreshNetworkRetracing())

INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)
FEATURES, LOGITS, PROBABILITIES = "features", "logits", "probabilities"


def _conv_bn_relu(x, filters: int, kernel: int, name: str):
    """Convolution (no bias: batch normalisation follows), batch normalisation, ReLU."""
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=name)(x)
    x = FusedBatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _head(x, units: int, dropout: float, n_classes: int):
    """Dense ``features`` (batch-normalised, ReLU), dropout, ``logits``, ``probabilities``."""
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(units, use_bias=False, name="dense")(x)
    x = FusedBatchNormalization(name="dense_bn")(x)
    x = layers.ReLU(name=FEATURES)(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(n_classes, name=LOGITS)(x)
    return layers.Activation("softmax", name=PROBABILITIES)(x)


def _inputs():
    inputs = keras.Input(INPUT_SHAPE, name="image")
    return inputs, layers.Rescaling(1.0 / 255, name="rescale")(inputs)


def five_layer(n_classes: int) -> keras.Model:
    """Kim et al.'s five-layer CNN: conv 32 5x5, pool, conv 32 4x4, pool, conv 64 5x5, pool,
    dense 1024, dropout 0.3, softmax; batch normalisation after every hidden layer.

    Every convolution and 3x3 / stride 2 max-pool is ``same``-padded, so 48x48 shrinks to
    24, 12 and 6 and the dense layer sees 6x6x64 = 2,304 features: about 2.44 M parameters.
    """
    inputs, x = _inputs()
    for i, (filters, kernel) in enumerate([(32, 5), (32, 4), (64, 5)], start=1):
        x = _conv_bn_relu(x, filters, kernel, f"conv{i}")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{i}")(x)
    return keras.Model(inputs, _head(x, 1024, 0.3, n_classes), name="five_layer")


def baseline(n_classes: int) -> keras.Model:
    """Four 3x3x32 same-padded ReLU convolutions with a 2x2 max-pool after each pair, a
    128-unit dense layer, 50% dropout and softmax; batch normalisation after every hidden layer."""
    inputs, x = _inputs()
    for i in range(1, 5):
        x = _conv_bn_relu(x, 32, 3, f"conv{i}")
        if i % 2 == 0:
            x = layers.MaxPooling2D(2, name=f"pool{i // 2}")(x)
    return keras.Model(inputs, _head(x, 128, 0.5, n_classes), name="baseline")


MODELS = {"five_layer": five_layer, "baseline": baseline}

#: Batch normalisation's moving statistics average over at most this share of a run's training steps.
BATCH_NORM_WINDOW = 0.1


def fit_batch_norm_window(net: keras.Model, steps: int, share: float = BATCH_NORM_WINDOW) -> None:
    """Let batch normalisation's moving statistics forget their start within ``share`` of a
    run of ``steps`` training steps. Keras's momentum (0.99) averages over about 100 steps,
    which leaves a run of a few hundred steps predicting with statistics near their initial
    values; runs of 1,000 steps or more keep Keras's momentum (as does an unknown count, < 1)."""
    if steps < 1:
        return
    for layer in net.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = max(0.0, min(layer.momentum, 1 - 1 / (share * steps)))


def build_model(name: str, n_classes: int) -> keras.Model:
    """The named architecture with ``n_classes`` outputs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](n_classes)


def augmentation(flip: bool, rotation_deg: float, zoom: float, shift: float, seed: int) -> FaceAugmentation:
    """Random horizontal flip, rotation (+-degrees), zoom (+-fraction) and shift (+-fraction
    of the size) of each face, in one resampling, edges filled with the nearest pixel."""
    return FaceAugmentation(flip, rotation_deg, zoom, shift, seed, name="augmentation")


def heads(model: keras.Model) -> keras.Model:
    """A view of ``model`` with three outputs: features, logits and probabilities."""
    names = (FEATURES, LOGITS, PROBABILITIES)
    return keras.Model(model.inputs, [model.get_layer(n).output for n in names], name=f"{model.name}_heads")


def as_batch(images: np.ndarray) -> np.ndarray:
    """(N, 48, 48) or (N, 48, 48, 1) uint8 images as the model's float32 input."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[1:] != INPUT_SHAPE:
        raise ValueError(f"expected (N, {IMAGE_SIZE}, {IMAGE_SIZE}[, 1]) images, got {images.shape}")
    return images.astype(np.float32)


def predict_batches(net: keras.Model, batch: np.ndarray, batch_size: int) -> np.ndarray | list[np.ndarray]:
    """``net``'s output (or outputs) for a model-input ``batch``, ``batch_size`` faces at a time.

    Called batch by batch rather than through ``Model.predict``, whose NumPy input pipeline
    logs a spurious TensorFlow error for a short last batch after a ``fit`` in the same process.
    """
    if len(batch) == 0:  # outputs with no rows, without running TensorFlow's fused kernels on an empty batch
        empty = [np.zeros((0, *output.shape[1:]), np.float32) for output in net.outputs]
        return empty if len(empty) > 1 else empty[0]
    chunks = [net.predict_on_batch(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)]
    if isinstance(chunks[0], (list, tuple)):
        return [np.concatenate([chunk[k] for chunk in chunks]) for k in range(len(chunks[0]))]
    return np.concatenate(chunks)


def embed(model: keras.Model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Penultimate-layer features of ``images`` (N, 48, 48) uint8: an (N, D) float32 array."""
    view = keras.Model(model.inputs, model.get_layer(FEATURES).output)
    return np.asarray(predict_batches(view, as_batch(images), batch_size), dtype=np.float32)


#: The zip format's earliest date: written for every timestamp Keras would stamp with "now".
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_model(model: keras.Model, path: Path) -> None:
    """Save ``model`` for inference (architecture and weights, no optimizer state) as a
    .keras file whose bytes depend only on them: the save date Keras writes into
    metadata.json and the zip entries' times are set to the zip epoch."""
    inference = keras.Model.from_config(model.get_config())  # uncompiled: no optimizer
    inference.set_weights(model.get_weights())
    path = Path(path)
    raw = path.with_name(f".{path.stem}.raw.keras")
    inference.save(raw)
    buffer = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(buffer, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "date_saved": "1980-01-01@00:00:00"}).encode()
            dst.writestr(zipfile.ZipInfo(info.filename, ZIP_EPOCH), data, compress_type=info.compress_type)
    raw.unlink()
    path.write_bytes(buffer.getvalue())
