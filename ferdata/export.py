"""Writing the dataset folder: class-directory PNGs, the manifest, the dropped table and the
JSON reports, assembled in a temporary folder and renamed into place (:mod:`ferdata.files`).

The tree is what ``keras.utils.image_dataset_from_directory``, torchvision's
``ImageFolder`` and FiftyOne's ``ImageClassificationDirectoryTree`` read::

    <out>/{train,val,test}/<class>/<sample_id>.png

Every class has a folder in every split, even an empty one, so the folders always name
the whole taxonomy. PNG bytes depend only on the pixels, so rebuilding gives identical files.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from ferdata.executor import Executor
from ferdata.files import replace_dir, write_json
from ferdata.manifest import DATASET_SCHEMA, Reject, pixels_to_array, rejects_table, write_table
from ferdata.progress import progress_bar
from ferdata.shards import ShardWriter, shard_name


def write_png(path: Path, pixels: np.ndarray) -> None:
    """An 8-bit grayscale PNG with no metadata: the same pixels, the same bytes."""
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="L").save(path, format="PNG")


def write_class_pngs(folder: Path, paths: list[str], images: np.ndarray, what: str) -> None:
    """Write each image to ``folder / path`` (class folders must exist), with a progress bar."""
    with progress_bar(f"{what}: write PNGs", total=len(paths)) as advance:
        for rel, pixels in zip(paths, images):
            write_png(folder / rel, pixels)
            advance(1)


def write_shard_pngs(shard: str, folder: str) -> int:
    """Write every face of a dataset manifest shard to ``folder`` / its ``path`` (an
    executor task: it reads the shard itself, so no pixels travel to it); the faces written."""
    table = pq.read_table(shard, columns=["path", "pixels"])
    for rel, pixels in zip(table["path"].to_pylist(), pixels_to_array(table["pixels"])):
        write_png(Path(folder) / rel, pixels)
    return table.num_rows


def write_dataset(out_dir: Path, parts: Iterable[pa.Table], rows: int, dropped: list[Reject],
                  classes: Sequence[str], splits: Sequence[str], reports: dict[str, dict],
                  executor: Executor) -> None:
    """Write the whole dataset folder from ``parts``, the shards of its manifest, ``rows``
    in all: each shard is written here, and its faces, as PNGs at their ``path``, by a task
    on ``executor``. ``reports`` maps JSON file names to their contents."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        for split in splits:
            for name in classes:
                (tmp / split / name).mkdir(parents=True)
        writer = ShardWriter(tmp / "manifest.parquet", DATASET_SCHEMA)

        def png_tasks() -> Iterable[tuple[str, str]]:
            for k, manifest in enumerate(parts):
                writer.write(k, manifest)
                yield str(writer.folder / shard_name(k)), str(tmp)

        with progress_bar("split: write PNGs", total=rows) as advance:
            for written in executor.map(write_shard_pngs, png_tasks()):
                advance(written)
        writer.close()
        write_table(rejects_table(dropped), tmp / "dropped.parquet")
        for name, report in reports.items():
            write_json(tmp / name, report)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
