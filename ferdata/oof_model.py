"""Out-of-fold class probabilities: a CNN per fold, or a fast model on simple image features.

Every sample's probabilities come from a model that never saw it: the data are split into
stratified folds and each fold is predicted by a model trained on the others. This is the
input confident learning needs. Three models, measured on real FER2013 against the FER+
majority (see the README): a compact CNN on the pixels (:mod:`ferdata.oof_cnn`; by far the
most precise, minutes on a CPU), and logistic regression on HOG (edges of brows, eyes and
mouth) or on whitened PCA of the pixels (seconds, fine on drawn faces, weak on real ones).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Callable

import numpy as np
from skimage.feature import hog
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

if TYPE_CHECKING:
    from ferdata.oof_cnn import CnnClassifier  # imports TensorFlow: only when the CNN is used

FEATURES: tuple[str, ...] = ("cnn", "hog", "pca")
#: 8x8-pixel cells, 2x2-cell blocks on a 48x48 face: 5x5 blocks x 4 cells x 9 bins = 900 values.
HOG_OPTIONS = dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2))

Advance = Callable[[int], None]


def hog_features(images: np.ndarray, advance: Advance = lambda n: None) -> np.ndarray:
    """(N, 48, 48) uint8 faces -> (N, 900) float32 HOG descriptors."""
    rows = []
    for image in images:
        rows.append(hog(image, feature_vector=True, **HOG_OPTIONS))
        advance(1)
    return np.array(rows, dtype=np.float32).reshape(len(images), -1)


def pixel_features(images: np.ndarray) -> np.ndarray:
    """(N, 48, 48) uint8 faces -> (N, 2304) float32 pixels in 0..1 (PCA runs inside each fold)."""
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def feature_matrix(images: np.ndarray, kind: str, advance: Advance = lambda n: None) -> np.ndarray:
    """The features ``kind`` of every image: HOG, pixels in 0..1 (pca), the images themselves (cnn)."""
    if kind == "cnn":
        advance(len(images))
        return images
    if kind == "hog":
        return hog_features(images, advance)
    if kind == "pca":
        advance(len(images))
        return pixel_features(images)
    raise ValueError(f"unknown features {kind!r}; known: {', '.join(FEATURES)}")


def classifier(kind: str, *, c: float, max_iter: int, pca_components: int, epochs: int,
               batch_size: int, seed: int, label: str = "label issues", later_epochs: int = 0
               ) -> Pipeline | CnnClassifier:
    """The CNN (its progress shown under ``label``, ``later_epochs`` still to come after it);
    or standardised HOG, or whitened PCA of the pixels, then multinomial logistic regression."""
    if kind == "cnn":
        from ferdata.oof_cnn import CnnClassifier

        return CnnClassifier(epochs=epochs, batch_size=batch_size, seed=seed, label=label,
                             later_epochs=later_epochs)
    model = LogisticRegression(C=c, max_iter=max_iter)
    if kind == "hog":
        return make_pipeline(StandardScaler(), model)
    return make_pipeline(PCA(pca_components, whiten=True, random_state=seed), model)


def out_of_fold_probabilities(
    features: np.ndarray, labels: np.ndarray, n_classes: int, folds: int,
    make_model: Callable[[], Pipeline | CnnClassifier], seed: int, advance: Advance = lambda n: None,
) -> tuple[np.ndarray, int]:
    """(N, n_classes) probabilities, each row from the fold model that did not train on it,
    and how many fold models stopped at ``max_iter`` before converging.

    A class missing from a fold's training part gets probability 0 in that fold.
    """
    probs = np.zeros((len(labels), n_classes), dtype=np.float64)
    not_converged = 0
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        fold_indices = list(splitter.split(features, labels))
    for train, held_out in fold_indices:
        model = make_model()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(features[train], labels[train])
        stalled = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
        not_converged += bool(stalled)
        for w in caught:
            if w not in stalled:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        probs[np.ix_(held_out, model.classes_)] = model.predict_proba(features[held_out])
        advance(1)
    return probs, not_converged
