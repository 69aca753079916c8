"""The canonical class order and each source's label map (FORMATS.md)."""

import pytest

from ferdata.taxonomy import CLASSES_7, SOURCE_LABELS, Taxonomy


def test_class_order_is_fer2013s():
    assert CLASSES_7 == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert [Taxonomy.of_size(7).index(c) for c in CLASSES_7] == list(range(7))


@pytest.mark.parametrize("source, native, expected", [
    ("fer2013", "1", "disgust"), ("fer2013", "6", "neutral"), ("fer2013", "happy", "happy"),
    ("ckplus", "0", "neutral"), ("ckplus", "1", "angry"), ("ckplus", "3", "disgust"),
    ("ckplus", "6", "sad"), ("ckplus", "7", "surprise"),
    ("jaffe", "DI", "disgust"), ("jaffe", "NE", "neutral"), ("jaffe", "SU", "surprise"),
    ("raf-db", "1", "surprise"), ("raf-db", "4", "happy"), ("raf-db", "6", "angry"),
    ("affectnet", "0", "neutral"), ("affectnet", "3", "surprise"), ("affectnet", "6", "angry"),
])
def test_native_labels_map_to_canonical_classes(source, native, expected):
    assert Taxonomy.of_size(7).canonical(source, native) == expected


def test_contempt_has_no_place_in_seven_classes_but_is_index_7_in_eight():
    assert Taxonomy.of_size(7).canonical("ckplus", "2") is None
    eight = Taxonomy.of_size(8)
    assert eight.canonical("ckplus", "2") == "contempt" and eight.index("contempt") == 7


def test_every_source_maps_onto_known_classes_only():
    for labels in SOURCE_LABELS.values():
        assert set(labels.values()) <= set(Taxonomy.of_size(8).classes)


def test_unknown_taxonomy_size_is_refused():
    with pytest.raises(ValueError, match="7 or 8"):
        Taxonomy.of_size(6)


def test_a_labelled_folder_brings_its_own_map():
    labels = {"anger": "angry", "smirk": "contempt"}
    assert Taxonomy.of_size(7).canonical("studio", "anger", labels) == "angry"
    assert Taxonomy.of_size(7).canonical("studio", "smirk", labels) is None
    assert Taxonomy.of_size(8).canonical("studio", "smirk", labels) == "contempt"
