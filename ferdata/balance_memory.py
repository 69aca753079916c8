"""How much memory resampling the train split will take, checked before it starts.

imbalanced-learn's interpolating samplers (SMOTE, borderline SMOTE, ADASYN) work on
float32 rows: the train faces as features, the new rows, and the stack of both that
``fit_resample`` returns; a PCA feature space first needs the pixels and a centred copy,
then only the components. Copying methods (``random_over``, ``augment``) hold uint8 faces
only, and ``none`` nothing new. The estimate adds up those arrays and the uint8 faces
written out.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil

from ferdata.manifest import IMAGE_SIZE

PIXELS = IMAGE_SIZE * IMAGE_SIZE
FLOAT = 4  # bytes per float32 feature
GB = 1024 ** 3


@dataclass(frozen=True)
class ResampleSize:
    """What decides the memory: real train faces, faces to make, and the feature width
    (PCA components, or 0 for the pixels)."""

    real: int
    new: int
    pca_components: int = 0

    def bytes(self, method: str, interpolating: bool) -> int:
        """Bytes ``method`` allocates to resample and write, beyond the faces already read."""
        if method in ("none", "random_under"):
            return self.real * PIXELS  # the kept faces, copied once for writing
        faces_out = (self.real + self.new) * PIXELS * 2  # the new faces, and the stack written out
        if not interpolating:
            return faces_out
        width = self.pca_components or PIXELS
        fitting = (self.real + 2 * self.new + self.real) * width * FLOAT  # features, new rows, the stack
        pca = (2 * self.real + self.new) * PIXELS * FLOAT if self.pca_components else 0  # fit; map back
        return max(fitting, pca) + faces_out


def readable(size: int) -> str:
    """Bytes as GB, or MB below a GB."""
    return f"{size / GB:.1f} GB" if size >= GB else f"{size / 2**20:.0f} MB"


def available_bytes() -> int:
    """Memory this machine can give now without swapping."""
    return int(psutil.virtual_memory().available)


def memory_advice(method: str, interpolating: bool, size: ResampleSize, limit: int,
                  pca_components: int) -> str | None:
    """None when resampling fits in ``limit`` bytes; else what it needs and the settings that
    need less, with their estimates."""
    need = size.bytes(method, interpolating)
    if need <= limit:
        return None
    options = []
    if interpolating and size.pca_components == 0:
        pca = ResampleSize(size.real, size.new, pca_components).bytes(method, True)
        options.append(f"feature_space: pca (neighbours among {pca_components} components: {readable(pca)})")
    options.append("sampling_strategy as per-class targets ({disgust: 3000, ...}) or a share (0.5), "
                   "so that fewer faces are made")
    if interpolating:
        options.append(f"method: augment or random_over (copies of real faces: "
                       f"{readable(size.bytes('augment', False))})")
    options.append(f"method: none with train.class_weights: true (weights instead of new faces: "
                   f"{readable(size.bytes('none', False))})")
    space = f"{size.pca_components} PCA components" if size.pca_components else "pixel"
    return (f"method {method} would need about {readable(need)} to make {size.new:,} faces from "
            f"{size.real:,} ({space} features), and {readable(limit)} is available. Settings that "
            "need less: " + "; ".join(options) + ".")
