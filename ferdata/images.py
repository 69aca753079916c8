"""Decoding raw image files to 8-bit grayscale arrays, and loading a manifest row's pixels."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm")
#: Larger images are refused from their header, before any pixel is decoded: Pillow's own
#: decompression-bomb limit (about 89 million pixels, 0.25 GB as RGB), far above any face photo.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
#: Modes holding more than 8 bits per pixel: scaled by their maximum rather than clipped.
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")


class ImageDecodeError(ValueError):
    """A file that should be an image could not be decoded; the message says why."""


def decode_gray(path: Path) -> np.ndarray:
    """Decode an image file to a 2-D uint8 array (palette, RGB, 16-bit and float converted to L).

    Anything that is not a decodable image of at most :data:`MAX_PIXELS` pixels raises
    :class:`ImageDecodeError` saying why: empty, truncated or corrupt files, unknown formats,
    oversized headers (decompression bombs), oversized compressed metadata.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageDecodeError("empty file (0 bytes)")
        with warnings.catch_warnings(), Image.open(path) as img:
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused just below
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(_too_large(width, height))
            img.load()
            if img.mode in _WIDE_MODES:
                arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
                top = arr.max() if arr.max() > 0 else 1.0
                return np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
            return np.asarray(img.convert("L"), dtype=np.uint8).copy()
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:  # raised by Image.open past twice the limit
        raise ImageDecodeError(f"{exc}; refused as a decompression bomb") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as exc:
        raise ImageDecodeError(f"not a readable image ({exc.__class__.__name__}: {exc})") from exc


def _too_large(width: int, height: int) -> str:
    return (f"{width}x{height} = {width * height:,} pixels, over the {MAX_PIXELS:,}-pixel limit; "
            "refused as a decompression bomb")


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
