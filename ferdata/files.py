"""Files that appear whole or not at all: JSON reports and output folders, written beside
their place and renamed into it, so that a stage stopped halfway leaves the old file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def write_json(path: Path, data: dict) -> None:
    """Indented JSON in the order the report was built (deterministic for the same data)."""
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def temporary_sibling(path: Path) -> Path:
    """A hidden file beside ``path`` to write first and then rename into place."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    write_json(tmp, data)
    tmp.replace(path)


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder ``src`` to ``dst``, removing what was there only afterwards."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        dst.rename(old)
    src.rename(dst)
    if old is not None:
        shutil.rmtree(old)
