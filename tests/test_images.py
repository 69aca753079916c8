"""Decoding raw images: hostile files are refused with a reason, odd but valid ones decoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from ferdata.images import MAX_PIXELS, ImageDecodeError, decode_gray
from helpers import png_claiming


def png_header_only(path: Path, width: int, height: int) -> Path:
    path.write_bytes(png_claiming(width, height))
    return path


@pytest.mark.parametrize("side", [30000, 10000])  # past twice Pillow's limit (an error), past the limit (a warning)
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, side):
    bomb = png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_gray(bomb)
    assert side * side > MAX_PIXELS


def test_a_bomb_in_a_compressed_text_chunk_is_refused(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), zip=True)
    path = tmp_path / "text-bomb.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path, pnginfo=info)
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        decode_gray(path)


@pytest.mark.parametrize("content, reason", [
    (b"", "empty file"),
    (b"\x89PNG\r\n\x1a\n truncated", "not a readable image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a readable image"),
])
def test_empty_truncated_and_foreign_files_are_refused(tmp_path, content, reason):
    path = tmp_path / "frame.png"
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason):
        decode_gray(path)


def test_a_truncated_body_after_a_valid_header_is_refused(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageDecodeError, match="not a readable image"):
        decode_gray(path)


def test_a_folder_named_like_an_image_is_refused(tmp_path):
    folder = tmp_path / "frame.png"
    folder.mkdir()
    with pytest.raises(ImageDecodeError):
        decode_gray(folder)


@pytest.mark.parametrize("mode", ["F", "I;16", "I"])
def test_wide_images_are_scaled_to_8_bits_not_clipped(tmp_path, mode):
    values = np.linspace(0, 0.5 if mode == "F" else 4000, 100).reshape(10, 10)
    path = tmp_path / "wide.tif"
    Image.fromarray(values.astype(np.float32 if mode == "F" else np.int32)).convert(mode).save(path)
    gray = decode_gray(path)
    assert gray.dtype == np.uint8 and gray.shape == (10, 10)
    assert gray.min() == 0 and gray.max() == 255


@pytest.mark.parametrize("mode", ["1", "LA", "RGBA", "CMYK", "P"])
def test_other_modes_become_grey(tmp_path, mode):
    path = tmp_path / ("odd.jpg" if mode == "CMYK" else "odd.png")
    Image.fromarray(np.full((6, 9, 3), 200, np.uint8)).convert(mode).save(path)
    gray = decode_gray(path)
    assert gray.shape == (6, 9) and gray.dtype == np.uint8
