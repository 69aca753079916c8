"""Decoding raw image files to 8-bit grayscale arrays, and loading a manifest row's pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm")


class ImageDecodeError(ValueError):
    """A file that should be an image could not be decoded; the message says why."""


def decode_gray(path: Path) -> np.ndarray:
    """Decode an image file to a 2-D uint8 array (palette, RGB and 16-bit converted to L)."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageDecodeError("empty file (0 bytes)")
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                top = arr.max() or 1.0
                return np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
            return np.asarray(img.convert("L"), dtype=np.uint8).copy()
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"not a readable image ({exc.__class__.__name__}: {exc})") from exc


def load_pixels(row: dict, raw_root: Path, pixels: np.ndarray | None) -> np.ndarray:
    """A manifest row's image: from its source's decoded pixel array, else from its file.

    ``raw_root`` is the source's folder (``raw/<source>/``); ``pixels`` is that source's
    ``pixels/<source>.npy`` (memory-mapped is fine), or None for sources decoded lazily.
    """
    if row.get("pixels_row") is not None:
        if pixels is None:
            raise ValueError(f"{row['sample_id']}: has pixels_row but no pixel array was given")
        return np.asarray(pixels[row["pixels_row"]])
    return decode_gray(raw_root / row["source_file"])
