"""The registry of raw dataset readers: adding a dataset is one module and one line here."""

from __future__ import annotations

from ferdata.sources.affectnet import AffectNet
from ferdata.sources.base import Source
from ferdata.sources.ckplus import CKPlus
from ferdata.sources.fer2013 import FER2013
from ferdata.sources.folder import LabelledFolder
from ferdata.sources.jaffe import JAFFE
from ferdata.sources.rafdb import RAFDB

SOURCES: dict[str, type[Source]] = {s.name: s for s in (FER2013, CKPlus, JAFFE, RAFDB, AffectNet)}
#: Reads each labelled image folder named in ``ingest.folders`` (any name not taken above).
FOLDER = LabelledFolder
