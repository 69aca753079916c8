"""What alignment does on generated data, measured against the generator's truth.

    python benchmarks/demo_alignment.py [PIPELINE_DIR]      (default: pipelines/demo, after `dvc repro`)

Reads the pipeline's ``raw/sample_truth.json`` and its align stage's outputs; writes nothing.
Prints, per source:

* the share of its faces that the align stage gave the status ``aligned`` (from
  ``align.json``, which also counts the faces dropped for a failed fit or a face not found;
  the planted blank FER2013 row is left out);
* how far each face came rolled (the true eye line's angle, from the truth file), as median
  and 90th percentile of its size, and how far the landmark fit's eye line is from it (the
  roll the warp leaves), with the share off by more than 5 degrees;
* the fit's inter-ocular distance against the true one (the scale error).

Then, on FER2013's faces, the same classifier (HOG features and logistic regression,
trained on the train split, scored on val and test) once on the raw 48x48 crops and once
on the aligned ones: what an ablation of the align stage would show with a network.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ferdata.align import ALIGNED  # noqa: E402
from ferdata.manifest import pixels_to_array  # noqa: E402
from ferdata.oof_model import hog_features  # noqa: E402


def true_eye_lines(truth: dict, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The true eye line's angle (degrees) and length (pixels) of each face."""
    eyes = [(np.array(truth[s]["left_eye"]), np.array(truth[s]["right_eye"])) for s in ids]
    angle = np.array([np.degrees(np.arctan2(*(right - left)[::-1])) for left, right in eyes])
    return angle, np.array([np.linalg.norm(right - left) for left, right in eyes])


def median_p90(values: np.ndarray) -> str:
    return f"{np.median(values):5.1f} {np.percentile(values, 90):5.1f}"


def classifier_accuracy(images: np.ndarray, labels: np.ndarray, train: np.ndarray) -> float:
    """HOG + logistic regression trained on ``train``, scored on the other faces."""
    features = hog_features(images)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.003, max_iter=500))
    with threadpool_limits(1):
        model.fit(features[train], labels[train])
        return float((model.predict(features[~train]) == labels[~train]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline", type=Path, nargs="?",
                        default=Path(__file__).resolve().parents[1] / "pipelines" / "demo")
    args = parser.parse_args()
    sample_truth = json.loads((args.pipeline / "raw" / "sample_truth.json").read_text())
    truth, blank = sample_truth["faces"], sample_truth["defects"]["blank"]
    statuses = json.loads((args.pipeline / "processed" / "aligned" / "align.json").read_text())["sources"]
    table = pq.read_table(args.pipeline / "processed" / "aligned" / "aligned.parquet")
    rows = table.drop_columns(["pixels"]).to_pandas()
    ok = (rows.align_status == ALIGNED).to_numpy() & rows.sample_id.map(lambda s: truth.get(s) is not None).to_numpy()

    print(f"{args.pipeline}: alignment against the drawn truth; degrees as median and 90th percentile")
    print(f"{'source':11s} {'faces':>5s} {'aligned':>8s} | {'|true roll|':>11s} | {'roll left':>11s} {'> 5 deg':>8s}"
          f" | {'scale error':>11s}")
    for source, counts in sorted(statuses.items()):
        seen = sum(counts["statuses"].values()) - sum(s.startswith(f"{source}-") for s in blank)
        kept = (rows.source == source).to_numpy() & ok
        angle, length = true_eye_lines(truth, rows.sample_id[kept].tolist())
        left = np.abs(angle - rows.eye_angle[kept].to_numpy())
        scale = np.abs(rows.interocular[kept].to_numpy() / length - 1)
        print(f"{source:11s} {seen:5d} {counts['statuses'].get(ALIGNED, 0) / seen:8.1%} | "
              f"{median_p90(np.abs(angle)):>11s} | {median_p90(left):>11s} {np.mean(left > 5):8.1%} | "
              f"{np.median(scale):5.1%} {np.percentile(scale, 90):5.1%}")

    interim = pq.read_table(args.pipeline / "processed" / "interim" / "manifest.parquet").to_pandas()
    interim = interim.set_index("sample_id")
    fer = ok & (rows.source == "fer2013").to_numpy()
    ids = rows.sample_id[fer]
    raw = np.load(args.pipeline / "processed" / "interim" / "pixels" / "fer2013.npy")
    raw = raw[interim.loc[ids, "pixels_row"].astype(int).to_numpy()]
    aligned = pixels_to_array(table["pixels"].filter(fer))
    labels = interim.loc[ids, "label_index"].to_numpy()
    train = (interim.loc[ids, "split"] == "train").to_numpy()
    print(f"FER2013, HOG + logistic regression, trained on {train.sum()} faces, scored on {(~train).sum()} "
          f"(val and test): raw crops {classifier_accuracy(raw, labels, train):.1%}, "
          f"aligned {classifier_accuracy(aligned, labels, train):.1%}")


if __name__ == "__main__":
    main()
