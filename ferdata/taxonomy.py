"""Canonical expression classes and each source's map from native labels to them."""

from __future__ import annotations

from dataclasses import dataclass

#: The seven FER2013 classes, in FER2013's order: the class index order everywhere.
CLASSES_7: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: The eight-class taxonomy keeps CK+ and FER+ contempt as index 7.
CLASSES_8: tuple[str, ...] = CLASSES_7 + ("contempt",)

#: Native label -> canonical name, per source. Names not in the chosen taxonomy are dropped.
#: Labelled folders (``ingest.folders``) bring their own map from params.yaml.
SOURCE_LABELS: dict[str, dict[str, str]] = {
    "fer2013": {str(i): name for i, name in enumerate(CLASSES_7)}
    # the image-folder release names its class folders after the classes; FER+'s folders
    # give FER+'s plurality, which may be contempt
    | {name: name for name in CLASSES_8},
    "ckplus": {
        "0": "neutral", "1": "angry", "2": "contempt", "3": "disgust",
        "4": "fear", "5": "happy", "6": "sad", "7": "surprise",
    },
    "jaffe": {
        "AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy",
        "NE": "neutral", "SA": "sad", "SU": "surprise",
    },
    "raf-db": {
        "1": "surprise", "2": "fear", "3": "disgust", "4": "happy",
        "5": "sad", "6": "angry", "7": "neutral",
    },
    # codes 8 (none), 9 (uncertain) and 10 (no face) name no expression: the reader drops them
    "affectnet": {
        "0": "neutral", "1": "happy", "2": "sad", "3": "surprise",
        "4": "fear", "5": "disgust", "6": "angry", "7": "contempt",
    },
}


@dataclass(frozen=True)
class Taxonomy:
    """An ordered set of classes; a class's position is its label index."""

    classes: tuple[str, ...]

    @classmethod
    def of_size(cls, size: int) -> "Taxonomy":
        """The 7-class (default) or 8-class (with contempt) taxonomy."""
        if size == 7:
            return cls(CLASSES_7)
        if size == 8:
            return cls(CLASSES_8)
        raise ValueError(f"taxonomy must have 7 or 8 classes, not {size}")

    def index(self, name: str) -> int:
        """The label index of a class name."""
        return self.classes.index(name)

    def __contains__(self, name: object) -> bool:
        return name in self.classes

    def __len__(self) -> int:
        return len(self.classes)

    def canonical(self, source: str, native_label: str, labels: dict[str, str] | None = None) -> str | None:
        """The canonical class of a native label, or None when it has no place here; ``labels``
        is the source's own map where it brings one (a labelled folder), else SOURCE_LABELS'.

        Raises KeyError for a label the source does not define at all.
        """
        name = (SOURCE_LABELS[source] if labels is None else labels)[native_label]
        return name if name in self.classes else None
