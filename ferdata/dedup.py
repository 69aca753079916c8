"""Duplicates and leakage: blank images, exact and perceptual hashes, duplicate groups,
and which copies a group keeps.

Near-duplicates are found without comparing every pair: with a Hamming threshold ``t``
the 64 hash bits are shared out into ``t + 1`` bands, and two hashes within distance ``t``
agree exactly on at least one band (pigeonhole), so only hashes sharing a band value are
compared. Aligned faces share their coarse layout, so a pHash match only proposes a pair;
the pair holds when the two images also agree pixel by pixel (``near_max_diff``). Exact
duplicates (equal aligned pixels or equal raw ``content_hash``) and confirmed near pairs
are edges of one graph; its connected components of two or more samples are the
duplicate groups.

Only hashes take part in the search: the per-face work (:func:`face_stats`, a shard of
faces at a time on the executor) gives each face its pHash, pixel standard deviation, pixel
sha1 and 8x8-pixel block means. Aligned faces crowd together in pHash space, so the pairs
within the threshold grow with the square of the faces; each is first checked against a
bound from the block means, which is never more than the pixel difference, and dropped as
it is found when even the bound exceeds ``near_max_diff``. The faces of the pairs left
are read back, a chunk of pairs at a time, to confirm them pixel by pixel.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy.fft import dct
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ferdata.manifest import IMAGE_SIZE, pixels_to_array

SPLIT_ORDER = ("train", "val", "test")
#: leak_policy -> the split whose copies a cross-split group keeps, by preference; drop_all keeps
#: none; keep_all keeps the copies on every side (published protocols that never deduplicated).
KEEP_ALL = "keep_all"
LEAK_POLICIES: dict[str, tuple[str, ...]] = {
    "keep_eval": ("test", "val", "train"),
    "keep_train": ("train", "val", "test"),
    "drop_all": (),
    KEEP_ALL: SPLIT_ORDER,
}
WITHIN_SPLIT_POLICIES = ("keep_one", "keep_all")
#: label_conflicts: what happens to a group whose copies carry different labels.
LABEL_CONFLICT_POLICIES = ("drop", "keep")
#: Above this threshold the bands get so narrow that bucket sizes approach all-pairs work.
MAX_PHASH_THRESHOLD = 15

_HASH_SIZE = 8
_DCT_SIZE = 32
_CHUNK = 4096  # images converted to float at a time
_BLOCK = 8  # side of the blocks whose means bound the pixel difference
#: Float rounding allowance of the block bound, in grey levels: the bound may only let pairs through.
_BOUND_SLACK = 1e-3
#: Hashes the band choice looks at (evenly spaced), enough to see which bits the faces share.
_BAND_SAMPLE = 16_384
#: Keeps the candidate pairs (arrays of first and second indices) that may still be copies.
PairFilter = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _sha1s(images: np.ndarray) -> Iterator["hashlib._Hash"]:
    return (hashlib.sha1(img.tobytes()) for img in np.ascontiguousarray(images))


def pixel_hashes(images: np.ndarray) -> list[str]:
    """The sha1 of each image's pixels, in hex: equal hashes, identical aligned images."""
    return [sha1.hexdigest() for sha1 in _sha1s(images)]


def pixel_digests(images: np.ndarray) -> np.ndarray:
    """:func:`pixel_hashes` as 20-byte digests in one NumPy array (``S20``): no Python string per image."""
    digests = [sha1.digest() for sha1 in _sha1s(images)]
    return np.array(digests, dtype="S20") if digests else np.zeros(0, dtype="S20")


def _area_resize_matrix(src: int, dst: int) -> np.ndarray:
    """A (dst, src) matrix that averages the source pixels each destination pixel covers."""
    matrix = np.zeros((dst, src))
    scale = src / dst
    for i in range(dst):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), int(np.ceil(hi))):
            matrix[i, j] = min(hi, j + 1) - max(lo, j)
    return matrix / scale


def _phash_projection(size: int = IMAGE_SIZE) -> np.ndarray:
    """(8, size): area-resize to 32 pixels, then the 8 lowest DCT-II frequencies."""
    dct_rows = dct(np.eye(_DCT_SIZE), type=2, norm="ortho", axis=0)[:_HASH_SIZE]
    return dct_rows @ _area_resize_matrix(size, _DCT_SIZE)


def phash(images: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hashes (as uint64) of (N, H, W) grayscale images.

    The classic pHash: shrink to 32x32, 2-D DCT, keep the 8x8 lowest frequencies, one bit
    per coefficient: above the block's median or not. Brightness shifts and mild noise
    leave it (nearly) unchanged.
    """
    n, h, w = images.shape
    rows, cols = _phash_projection(h), _phash_projection(w).T
    out = np.empty(n, dtype=np.uint64)
    for start in range(0, n, _CHUNK):
        coeffs = rows @ images[start:start + _CHUNK].astype(np.float64) @ cols
        flat = coeffs.reshape(len(coeffs), _HASH_SIZE * _HASH_SIZE)
        bits = flat > np.median(flat, axis=1, keepdims=True)
        out[start:start + _CHUNK] = np.packbits(bits, axis=1).view(">u8").ravel()
    return out


def pixel_std(images: np.ndarray) -> np.ndarray:
    """Each image's pixel standard deviation."""
    out = np.empty(len(images), dtype=np.float64)
    for start in range(0, len(images), _CHUNK):
        chunk = images[start:start + _CHUNK]
        out[start:start + len(chunk)] = chunk.reshape(len(chunk), -1).std(axis=1)
    return out


@dataclass
class FaceStats:
    """Per face: the 64-bit pHash, the pixel standard deviation, the sha1 of the pixels and
    the block means (:func:`block_means`)."""

    phash: np.ndarray  # uint64
    std: np.ndarray  # float64
    sha1: np.ndarray  # S20 digests
    blocks: np.ndarray  # (N, 36) float32

    @classmethod
    def of(cls, images: np.ndarray) -> "FaceStats":
        return cls(phash(images), pixel_std(images), pixel_digests(images), block_means(images))

    @classmethod
    def empty(cls, n: int) -> "FaceStats":
        """Room for ``n`` faces' stats, filled by :meth:`put`."""
        return cls(np.empty(n, np.uint64), np.empty(n, np.float64), np.empty(n, "S20"),
                   np.empty((n, (IMAGE_SIZE // _BLOCK) ** 2), np.float32))

    def put(self, rows: np.ndarray, part: "FaceStats") -> None:
        """Store ``part``'s stats at ``rows``."""
        self.phash[rows], self.std[rows], self.sha1[rows], self.blocks[rows] = (
            part.phash, part.std, part.sha1, part.blocks)


def face_stats(shard: str) -> FaceStats:
    """The :class:`FaceStats` of a Parquet shard's ``pixels`` column (a task of the executor)."""
    return FaceStats.of(pixels_to_array(pq.read_table(shard, columns=["pixels"])["pixels"]))


class Faces(Protocol):
    """Per-row arrays by row (images, or their block means): an array, or anything that reads
    the rows it is indexed with."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: np.ndarray) -> np.ndarray: ...


def block_means(images: np.ndarray) -> np.ndarray:
    """(N, 36) float32: each image's 8x8-pixel block means, less the image's mean."""
    n, h, w = images.shape
    out = np.empty((n, (h // _BLOCK) * (w // _BLOCK)), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        chunk = images[start:start + _CHUNK].astype(np.float32)
        blocks = chunk.reshape(len(chunk), h // _BLOCK, _BLOCK, w // _BLOCK, _BLOCK).mean(axis=(2, 4))
        out[start:start + len(chunk)] = (blocks - chunk.mean(axis=(1, 2))[:, None, None]).reshape(len(chunk), -1)
    return out


def block_distance(blocks: Faces, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Mean absolute difference of the block means of images i and j: at most the mean pixel
    difference :func:`similar_pairs` measures (a block's mean difference is at most the mean
    of its absolute differences), so a pair above ``near_max_diff`` here is no copy."""
    out = np.empty(len(i), dtype=np.float32)
    for start in range(0, len(i), _CHUNK * 16):
        a, b = i[start:start + _CHUNK * 16], j[start:start + _CHUNK * 16]
        out[start:start + len(a)] = np.abs(blocks[a] - blocks[b]).mean(axis=1)
    return out


def hash_hex(hashes: np.ndarray) -> list[str]:
    """Hashes as 16-digit hex strings (the manifest's ``phash`` column)."""
    return [f"{int(h):016x}" for h in hashes]


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of two uint64 arrays."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def near_pairs(hashes: np.ndarray, threshold: int, keep: PairFilter | None = None) -> np.ndarray:
    """Index pairs (P, 2), i < j, of distinct positions whose hashes differ in <= threshold bits
    (and that ``keep``, if given, keeps: it filters each step's pairs as they are found).

    Each of the ``threshold + 1`` bands (:func:`bands`) is sorted once; equal band values sit
    next to each other, so comparing each hash with its neighbour ``d`` places on (d = 1, 2,
    ...) visits exactly the candidates. Only the positions whose bucket reaches ``d`` places
    further are kept for the next step, so the work follows the candidates, not the hashes
    times the largest bucket. Every step is vectorised.
    """
    if not 0 <= threshold <= MAX_PHASH_THRESHOLD:
        raise ValueError(f"phash threshold must be within 0..{MAX_PHASH_THRESHOLD}, not {threshold}")
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    found: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]  # pairs as i * n + j
    for band in bands(hashes, threshold):
        key = np.zeros(n, dtype=np.uint64)
        for k, bit in enumerate(band):
            key |= ((hashes >> np.uint64(bit)) & np.uint64(1)) << np.uint64(k)
        order = np.argsort(key, kind="stable")
        key, ordered = key[order], hashes[order]
        d, at = 1, np.flatnonzero(key[1:] == key[:-1])  # positions whose bucket goes on d places
        while len(at):
            close = at[hamming(ordered[at], ordered[at + d]) <= threshold]
            i, j = order[close], order[close + d]
            i, j = np.minimum(i, j), np.maximum(i, j)
            if keep is not None:
                kept = keep(i, j)
                i, j = i[kept], j[kept]
            found.append(i * n + j)
            d += 1
            at = at[at + d < n]
            at = at[key[at + d] == key[at]]
    pairs = np.unique(np.concatenate(found))
    return np.stack([pairs // n, pairs % n], axis=1)


def bands(hashes: np.ndarray, threshold: int) -> list[np.ndarray]:
    """The bit positions of each of ``threshold + 1`` bands that share out the 64 bits.

    Two hashes within ``threshold`` bits agree on at least one band whichever bits it holds,
    so the bands are chosen to make small buckets: in turn, each band takes the bit that
    leaves the fewest pairs sharing its value (the sum of squared bucket sizes) among an
    evenly spaced sample of ``hashes``. Aligned faces share their lowest pHash frequencies,
    and bands of consecutive bits would put those in one band whose buckets hold most faces.
    """
    sample = hashes[:: max(1, len(hashes) // _BAND_SAMPLE)]
    bits = ((sample[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).astype(np.int64)
    count = threshold + 1
    keys = np.zeros((count, len(sample)), dtype=np.int64)
    chosen: list[list[int]] = [[] for _ in range(count)]
    left = list(range(64))
    for step in range(64):
        band = step % count
        width = len(chosen[band])
        pairs = [_pairs_sharing(keys[band] | (bits[:, bit] << width), width + 1) for bit in left]
        bit = left.pop(int(np.argmin(pairs)))
        keys[band] |= bits[:, bit] << width
        chosen[band].append(bit)
    return [np.array(c, dtype=np.int64) for c in chosen]


def _pairs_sharing(keys: np.ndarray, width: int) -> int:
    """The sum of squared bucket sizes of ``keys`` (values below ``2 ** width``)."""
    counts = np.bincount(keys) if width <= 16 else np.unique(keys, return_counts=True)[1]
    return int(np.square(counts).sum())


#: Per-sample keys: a list of strings, a NumPy array of bytes, or an Arrow column.
Keys = Sequence[str] | np.ndarray | pa.Array | pa.ChunkedArray


def _arrow(values: Keys) -> pa.Array:
    """``values`` as one Arrow array (no per-row Python objects for Arrow or NumPy input)."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values if isinstance(values, pa.Array) else pa.array(values)


def _codes(values: Keys) -> np.ndarray:
    """Each value's index among the distinct values. NumPy bytes (the sha1 digests) are
    compared whole: Arrow would read them as C strings, cut at their first zero byte."""
    if isinstance(values, np.ndarray):
        return np.unique(values, return_inverse=True)[1].ravel().astype(np.int64)
    return pc.dictionary_encode(_arrow(values)).indices.to_numpy().astype(np.int64)


def candidate_pairs(phashes: np.ndarray, threshold: int, keep: PairFilter | None = None) -> np.ndarray:
    """Sample index pairs (P, 2) whose pHashes are equal or within ``threshold`` bits, and
    that ``keep`` (given sample indices) keeps.

    Samples sharing one hash are paired with that hash's first sample; near hashes pair
    their first samples. Pairs are candidates only: :func:`similar_pairs` confirms them.
    """
    unique_hashes, first, code = np.unique(phashes, return_index=True, return_inverse=True)
    code = code.ravel()
    others = np.flatnonzero(first[code] != np.arange(len(phashes)))
    same = np.stack([first[code[others]], others], axis=1)
    if keep is not None:
        same = same[keep(same[:, 0], same[:, 1])]
    keep_first = None if keep is None else (lambda i, j: keep(first[i], first[j]))
    near = first[near_pairs(unique_hashes, threshold, keep_first)]
    return np.concatenate([same, near.reshape(-1, 2)]).astype(np.int64)


def similar_pairs(images: Faces, pairs: np.ndarray, max_diff: float) -> np.ndarray:
    """The pairs whose images differ by at most ``max_diff`` grey levels on average, after
    removing each image's mean brightness: a pixel-level check that a pHash match is a copy.
    The faces are read a chunk of pairs at a time, so memory holds a chunk's faces however
    many pairs there are."""
    keep = np.zeros(len(pairs), dtype=bool)
    for start in range(0, len(pairs), _CHUNK):
        chunk = pairs[start:start + _CHUNK]
        involved, local = np.unique(chunk, return_inverse=True)
        faces = images[involved].astype(np.float32)
        faces -= faces.mean(axis=(1, 2), keepdims=True)
        local = local.reshape(chunk.shape)
        keep[start:start + len(chunk)] = np.abs(faces[local[:, 0]] - faces[local[:, 1]]).mean(axis=(1, 2)) <= max_diff
    return pairs[keep]


def duplicate_groups(images: Faces, exact_keys: list[Keys], threshold: int, max_diff: float,
                     hashes: np.ndarray | None = None,
                     blocks: Faces | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group ids (-1 when unique) numbered by first member, whether each group is exact,
    and each image's pHash (the pHashes and block means are computed from ``images``
    unless given).

    ``exact_keys`` are per-sample key lists (e.g. pixel sha1, raw content hash): equal
    keys join samples. Near copies join them too: pHashes within ``threshold`` bits
    propose a pair, the block means' bound drops the pairs that cannot be within
    ``max_diff`` grey levels, and the pair holds if the images differ by at most
    ``max_diff`` (:func:`similar_pairs`). A group is exact when one key value is shared by
    all its members.
    """
    n = len(images)
    hashes = phash(images) if hashes is None else hashes
    blocks = block_means(images) if blocks is None else blocks
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), hashes
    rows, cols, offset = [], [], n
    key_codes = [_codes(keys) for keys in exact_keys]
    for codes in key_codes:
        rows.append(np.arange(n))
        cols.append(offset + codes)
        offset += int(codes.max()) + 1
    def may_be_copies(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return block_distance(blocks, i, j) <= max_diff + _BOUND_SLACK

    pairs = similar_pairs(images, candidate_pairs(hashes, threshold, may_be_copies), max_diff)
    rows.append(pairs[:, 0])
    cols.append(pairs[:, 1])
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset))
    _, component = connected_components(graph, directed=False)
    component = component[:n]
    grouped = np.flatnonzero(np.bincount(component)[component] > 1)
    comps, first = np.unique(component[grouped], return_index=True)
    rank = np.empty(len(comps), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(comps))
    groups = np.full(n, -1, dtype=np.int64)
    groups[grouped] = rank[np.searchsorted(comps, component[grouped])]
    exact = np.zeros(len(comps), dtype=bool)
    for codes in key_codes:
        shared = np.unique(np.stack([groups[grouped], codes[grouped]], axis=1), axis=0)
        exact |= np.bincount(shared[:, 0], minlength=len(comps)) == 1
    return groups, exact, hashes


@dataclass
class Resolution:
    """What dedup decided: the reason each dropped sample goes, and the groups that leaked."""

    drop_reason: dict[int, str] = field(default_factory=dict)  # row -> leak | duplicate | label_conflict
    kept_for: dict[int, int] = field(default_factory=dict)  # dropped row -> the row it duplicates
    leaking_groups: list[int] = field(default_factory=list)
    conflicting_groups: list[int] = field(default_factory=list)


def labels_conflict(members: list[int], labels: Sequence[str], units: Sequence[str]) -> bool:
    """Whether two members of different units carry different labels (the frames of one
    CK+ sequence, one unit, may differ: its first frame is neutral)."""
    tagged = {(units[i], labels[i]) for i in members}
    return any(u != v and a != b for (u, a), (v, b) in combinations(tagged, 2))


def resolve_groups(groups: np.ndarray, splits: list[str], units: list[str], labels: list[str],
                   leak_policy: str, within_split: str, label_conflicts: str) -> Resolution:
    """Decide which members of each duplicate group stay.

    A group whose copies carry different labels (:func:`labels_conflict`) loses every copy
    under ``label_conflicts: drop``: at most one of its labels is right, and the copies
    cannot say which. Otherwise a group spanning several splits keeps only the copies in
    the split ``leak_policy`` prefers (``keep_eval``: test, else val; ``keep_train``: train
    first; ``drop_all``: none; ``keep_all``: every split's). Within each surviving split,
    ``keep_one`` keeps the first unit (in row order) and ``keep_all`` keeps every copy. A
    unit is a set of rows never deduplicated against each other (the frames of one CK+
    sequence share one unit).
    """
    if leak_policy not in LEAK_POLICIES:
        raise ValueError(f"leak_policy must be one of {sorted(LEAK_POLICIES)}, not {leak_policy!r}")
    if within_split not in WITHIN_SPLIT_POLICIES:
        raise ValueError(f"within_split_duplicates must be one of {WITHIN_SPLIT_POLICIES}, not {within_split!r}")
    if label_conflicts not in LABEL_CONFLICT_POLICIES:
        raise ValueError(f"label_conflicts must be one of {LABEL_CONFLICT_POLICIES}, not {label_conflicts!r}")
    result = Resolution()
    members_of: dict[int, list[int]] = {}
    for i in np.flatnonzero(groups >= 0):
        members_of.setdefault(int(groups[i]), []).append(int(i))
    for g, members in members_of.items():
        present = {splits[i] for i in members}
        if len(present) > 1:
            result.leaking_groups.append(g)
        if labels_conflict(members, labels, units):
            result.conflicting_groups.append(g)
            if label_conflicts == "drop":
                result.drop_reason.update((i, "label_conflict") for i in members)
                continue
        kept_split = next((s for s in LEAK_POLICIES[leak_policy] if s in present), None)
        survivors = members
        if len(present) > 1:
            if leak_policy != KEEP_ALL:
                survivors = [i for i in members if splits[i] == kept_split]
                for i in members:
                    if splits[i] != kept_split:
                        result.drop_reason[i] = "leak"
                        if survivors:
                            result.kept_for[i] = survivors[0]
        if within_split == "keep_one":
            first: dict[str, int] = {}  # split -> the row whose unit that split keeps
            for i in survivors:
                kept = first.setdefault(splits[i], i)
                if units[i] != units[kept]:
                    result.drop_reason[i] = "duplicate"
                    result.kept_for[i] = kept
    return result


def rows_except(n: int, left_out: Collection[int]) -> np.ndarray:
    """The rows 0..n-1 not in ``left_out``, ascending."""
    out = np.ones(n, dtype=bool)
    out[list(left_out)] = False
    return np.flatnonzero(out)


@dataclass
class Dedup:
    """Per-row hashes and groups, and the rows dedup drops with (reason, message)."""

    hashes: np.ndarray  # uint64 pHash per row
    groups: np.ndarray  # duplicate group per row, -1 when unique
    exact: np.ndarray  # per group: one pixel or content hash shared by all members
    leaking_groups: list[int]
    conflicting_groups: list[int]  # groups whose copies carry different labels
    drops: dict[int, tuple[str, str]]


class _Rows:
    """Some rows of ``faces``, indexed from 0."""

    def __init__(self, faces: Faces, rows: np.ndarray) -> None:
        self.faces, self.rows = faces, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return self.faces[self.rows[rows]]


def deduplicate(stats: FaceStats, images: Faces, ids: Sequence[str], splits: Sequence[str | None],
                units: Sequence[str], labels: Sequence[str], content_hashes: Keys, skip: set[int], *,
                phash_threshold: int, near_max_diff: float, blank_std: float, leak_policy: str,
                within_split: str, label_conflicts: str) -> Dedup:
    """Drop blank images, group duplicates among the rest, resolve each group by policy.

    ``stats`` are the faces' hashes; ``images`` is read only for the pairs a pHash match
    proposes. Rows in ``skip`` (already dropped for another reason) take no part.
    """
    drops: dict[int, tuple[str, str]] = {}
    stds = stats.std
    for i in np.flatnonzero(stds < blank_std):
        if int(i) not in skip:
            drops[int(i)] = ("blank", f"near-constant image (pixel std {stds[i]:.2f} < blank_std {blank_std})")
    rows = rows_except(len(ids), skip | drops.keys())
    hashes = stats.phash
    sub_groups, exact, _ = duplicate_groups(
        _Rows(images, rows), [stats.sha1[rows], _arrow(content_hashes).take(pa.array(rows))], phash_threshold,
        near_max_diff, hashes[rows], _Rows(stats.blocks, rows))
    groups = np.full(len(ids), -1, dtype=np.int64)
    groups[rows] = sub_groups
    resolution = resolve_groups(sub_groups, [splits[i] for i in rows], [units[i] for i in rows],
                                [labels[i] for i in rows], leak_policy, within_split, label_conflicts)
    group_labels: dict[int, set[str]] = {}
    for i in rows[sub_groups >= 0]:
        group_labels.setdefault(int(groups[i]), set()).add(labels[i])
    for k, reason in resolution.drop_reason.items():
        i = int(rows[k])
        if reason == "label_conflict":
            message = (f"duplicate group {groups[i]} holds the labels {', '.join(sorted(group_labels[groups[i]]))}; "
                       f"label_conflicts drop removes every copy")
        elif reason == "leak":
            message = (f"duplicate group {groups[i]} spans several splits; leak_policy {leak_policy} "
                       f"drops its {splits[i]} copies")
        else:
            message = f"duplicate group {groups[i]} has several copies in {splits[i]}; {within_split} keeps one"
        if k in resolution.kept_for:
            other = int(rows[resolution.kept_for[k]])
            message += f"; kept {ids[other]} ({splits[other]})"
        drops[i] = (reason, message)
    return Dedup(hashes, groups, exact, resolution.leaking_groups, resolution.conflicting_groups, drops)


def copies_of_train_rows(dedup_json: Path) -> set[str]:
    """The ids that ``dedup.json`` (the split stage's report) puts in one group, an exact or
    near copy, with a row ingested as train; the train rows themselves excluded."""
    copies: set[str] = set()
    for group in json.loads(Path(dedup_json).read_text())["groups"]:
        if any(member["split"] == "train" for member in group["members"]):
            copies.update(member["sample_id"] for member in group["members"] if member["split"] != "train")
    return copies


def dedup_report(result: Dedup, ids: Sequence[str], splits: Sequence[str | None],
                 labels: Sequence[str], params: dict) -> dict:
    """dedup.json: counts, the dropped ids by reason, and every group with its members."""
    dropped: dict[str, list[str]] = {}
    for i, (reason, _) in sorted(result.drops.items()):
        dropped.setdefault(reason, []).append(ids[i])
    members: dict[int, list[int]] = {}
    for i in np.flatnonzero(result.groups >= 0):
        members.setdefault(int(result.groups[i]), []).append(int(i))
    leaking, conflicting = set(result.leaking_groups), set(result.conflicting_groups)
    removed = conflicting if params.get("label_conflicts") == "drop" else set()
    keeps_leaks = params.get("leak_policy") == KEEP_ALL
    return {
        "params": params,
        "groups_found": len(members),
        "exact_groups": int(result.exact.sum()),
        "near_groups": int(len(result.exact) - result.exact.sum()),
        "leaks_resolved": len(leaking & removed) if keeps_leaks else len(leaking),
        "leaks_kept": len(leaking - removed) if keeps_leaks else 0,
        "label_conflicts": len(conflicting),
        "images_dropped": {reason: len(v) for reason, v in sorted(dropped.items())},
        "dropped": dict(sorted(dropped.items())),
        "groups": [
            {"dup_group": g, "kind": "exact" if result.exact[g] else "near", "leak": g in leaking,
             "labels": sorted({labels[i] for i in m}), "label_conflict": g in conflicting,
             "members": [{"sample_id": ids[i], "split": splits[i], "label": labels[i],
                          "dropped": result.drops[i][0] if i in result.drops else None} for i in m]}
            for g, m in sorted(members.items())
        ],
    }
