"""Alignment quality on your own copy of real FER2013, per class, against the raw pixels.

    python benchmarks/align_quality.py REAL_DIR [--params params.yaml] [--limit N] [--splits train,val]

REAL_DIR holds FER2013 in any layout ferdata reads (``fer2013.csv``, ``icml_face_data.csv``,
FER+'s ``FER2013Train/`` ... folders, or ``train/`` + ``test/`` class folders), or is a raw
folder with such a ``fer2013/`` inside. Every face goes through the align stage's own code
(process pool, batched fits, the ``align:`` section of the params file), and the script prints,
per class:

* the share of faces ``aligned`` and the other statuses;
* an independent check of the 48x48 outputs: the eye-line angle of a separate dlib 68-point
  fit (dlib's own predictor, one face at a time, started from the whole enlarged frame) on
  each output, as |median| and 90th percentile, for all outputs and for the ``aligned`` ones;
* the same check on the raw pixels, from the same run: what alignment starts from;
* a second opinion from a different model, dlib's 5-point predictor, on the same outputs.

Nothing is written anywhere; the images stay where they are.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import dlib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ferdata.align import ALIGNED, AlignParams, align_rows  # noqa: E402
from ferdata.landmarks import enlarge, predictor_path  # noqa: E402
from ferdata.params import load_section  # noqa: E402
from ferdata.sources.fer2013 import FER2013  # noqa: E402
from ferdata.taxonomy import CLASSES_7, SOURCE_LABELS  # noqa: E402

CHECK_FACTOR = 4  # outputs are enlarged this many times for the check fits


def fer2013_root(real_dir: Path) -> Path:
    """REAL_DIR itself, or its fer2013/ folder."""
    return real_dir / "fer2013" if (real_dir / "fer2013").is_dir() else real_dir


def eye_line_angles(images: np.ndarray, predictor: dlib.shape_predictor, eyes: tuple[list[int], list[int]]) -> np.ndarray:
    """|eye-line angle| (degrees) of each image by ``predictor``, started from the whole frame."""
    side = images.shape[1] * CHECK_FACTOR
    frame = dlib.rectangle(0, 0, side - 1, side - 1)
    angles = np.empty(len(images))
    for i, image in enumerate(images):
        parts = predictor(enlarge(image, CHECK_FACTOR), frame).parts()
        points = np.array([(p.x, p.y) for p in parts], dtype=np.float64)
        left, right = points[eyes[0]].mean(axis=0), points[eyes[1]].mean(axis=0)
        if left[0] > right[0]:
            left, right = right, left
        angles[i] = abs(math.degrees(math.atan2(right[1] - left[1], right[0] - left[0])))
    return angles


def checkers() -> dict[str, tuple[dlib.shape_predictor, tuple[list[int], list[int]]]]:
    """The 68-point check (eyes 36-41, 42-47) and the 5-point one (eye corners 2-3, 0-1)."""
    path = Path(predictor_path())
    return {"68": (dlib.shape_predictor(str(path)), (list(range(36, 42)), list(range(42, 48)))),
            "5": (dlib.shape_predictor(str(path.with_name("shape_predictor_5_face_landmarks.dat"))), ([2, 3], [0, 1]))}


def figure(values: np.ndarray) -> str:
    return f"{np.median(values):5.2f} {np.percentile(values, 90):5.2f}" if len(values) else "    -     -"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("real_dir", type=Path)
    parser.add_argument("--params", type=Path, default=Path(__file__).resolve().parents[1] / "params.yaml")
    parser.add_argument("--limit", type=int, default=0, help="only the first N faces (0: all)")
    parser.add_argument("--splits", default="train,val,test", help="FER2013 splits to measure")
    args = parser.parse_args()

    batch = FER2013(fer2013_root(args.real_dir)).read()
    splits = set(args.splits.split(","))
    records = [r for r in batch.records if r.split in splits and r.pixels_row is not None]
    if args.limit:
        records = records[:args.limit]
    labels = np.array([SOURCE_LABELS["fer2013"][r.native_label] for r in records])
    raw = np.ascontiguousarray(batch.pixels[[r.pixels_row for r in records]])
    params = load_section(args.params, "align", AlignParams)

    with tempfile.TemporaryDirectory() as tmp:
        interim = Path(tmp)
        (interim / "pixels").mkdir()
        np.save(interim / "pixels" / "fer2013.npy", raw)
        rows = [(r.sample_id, "fer2013", i, r.source_file, None) for i, r in enumerate(records)]
        start = time.perf_counter()
        outcomes, aligned = align_rows(params, rows, interim, interim)
        wall = time.perf_counter() - start
    status = np.array([o.status for o in outcomes])
    print(f"aligned {len(rows)} faces in {wall:.1f} s ({os.cpu_count()} workers); "
          f"params: {args.params}")

    check = checkers()
    angles = {(name, what): eye_line_angles(images, *check[name])
              for name in check for what, images in (("output", aligned), ("raw", raw))}
    ok = status == ALIGNED
    print("|eye-line angle|, degrees, as median and 90th percentile; 68-pt: dlib's own 68-point fit on "
          "each 48x48 image, 5-pt: dlib's 5-point model")
    print(f"{'class':9s} {'faces':>6s} {'aligned':>8s} | {'68-pt outputs':>13s} {'aligned only':>13s} "
          f"{'raw pixels':>13s} | {'5-pt outputs':>13s} {'raw pixels':>13s}")
    for name in (*CLASSES_7, "all"):
        members = np.ones(len(rows), bool) if name == "all" else labels == name
        if not members.any():
            continue
        cells = [angles["68", "output"][members], angles["68", "output"][members & ok], angles["68", "raw"][members],
                 angles["5", "output"][members], angles["5", "raw"][members]]
        print(f"{name:9s} {members.sum():6d} {ok[members].mean():8.1%} | "
              + " ".join(f"{figure(c):>13s}" for c in cells[:3]) + " | "
              + " ".join(f"{figure(c):>13s}" for c in cells[3:]))
    disagreement = np.array([np.nan if o.fit_disagreement is None else o.fit_disagreement for o in outcomes])
    print(f"calibration of align.disagreement_threshold ({params.disagreement_threshold}): "
          "68-pt check of the outputs by the fit's disagreement with its mirror fit")
    edges = [0.0, 0.05, 0.06, 0.08, 0.1, 0.13, 0.2, 0.3, np.inf]
    for low, high in zip(edges, edges[1:]):
        members = (disagreement >= low) & (disagreement < high)
        print(f"  [{low:.2f}, {high:.2f}) {members.sum():6d} faces ({members.mean():6.2%})  "
              f"|angle| outputs {figure(angles['68', 'output'][members])}, "
              f"their raw pixels {figure(angles['68', 'raw'][members])}")
    counts = {s: int((status == s).sum()) for s in sorted(set(status))}
    print("statuses:", ", ".join(f"{s} {n} ({n / len(rows):.1%})" for s, n in counts.items()))


if __name__ == "__main__":
    main()
