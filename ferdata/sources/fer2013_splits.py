"""FER2013's official split, as its Usage column and FER+'s folders name it."""

from __future__ import annotations

#: The Usage column (and the image-folder file-name prefix) -> split.
USAGE_SPLITS: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
#: FER+'s folder for each Usage, as its generate_training_data.py writes them.
FERPLUS_FOLDERS: dict[str, str] = {"Training": "FER2013Train", "PublicTest": "FER2013Valid",
                                   "PrivateTest": "FER2013Test"}
