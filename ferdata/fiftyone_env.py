"""FiftyOne, imported lazily with its database location and telemetry set beforehand.

FiftyOne reads its configuration when first imported, so every ferdata module that needs
it calls :func:`fiftyone` instead of ``import fiftyone``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

#: Where the review database lives unless FIFTYONE_DATABASE_DIR or --database-dir says otherwise.
DEFAULT_DATABASE_DIR = Path("~/.ferdata/fiftyone").expanduser()


def fiftyone(database_dir: Path | None = None) -> ModuleType:
    """The ``fiftyone`` module, its database in ``database_dir`` and telemetry off.

    ``database_dir`` wins over the FIFTYONE_DATABASE_DIR environment variable, which wins
    over :data:`DEFAULT_DATABASE_DIR`. Once the database is connected its place is fixed:
    asking for another one in the same process is an error.
    """
    if database_dir is not None:
        os.environ["FIFTYONE_DATABASE_DIR"] = str(Path(database_dir).expanduser().resolve())
    else:
        os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(DEFAULT_DATABASE_DIR))
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    # the bundled MongoDB 6.0 is older than FiftyOne's preferred version, and works
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    wanted = os.environ["FIFTYONE_DATABASE_DIR"]
    already = "fiftyone" in sys.modules
    import fiftyone as fo
    import fiftyone.core.odm.database as fodb

    if already and str(fo.config.database_dir) != wanted:
        if fodb._client is not None:
            raise RuntimeError(f"FiftyOne is already connected to the database in "
                               f"{fo.config.database_dir}; cannot switch to {wanted} in this process")
        fo.config.database_dir = wanted
    fo.config.do_not_track = True
    Path(wanted).mkdir(parents=True, exist_ok=True)
    return fo
