"""Where each stage reads and writes: every path of a pipeline, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """The data folders of one pipeline; ``root`` is the folder holding its dvc.yaml.

    ``raw_dir`` and ``processed_dir`` default to ``root/raw`` and ``root/processed``.
    """

    root: Path = Path(".")
    raw_dir: Path | None = None
    processed_dir: Path | None = None

    @property
    def raw(self) -> Path:
        return self.raw_dir or self.root / "raw"

    @property
    def processed(self) -> Path:
        return self.processed_dir or self.root / "processed"

    @property
    def interim(self) -> Path:
        return self.processed / "interim"

    @property
    def aligned(self) -> Path:
        return self.processed / "aligned"

    @property
    def dataset(self) -> Path:
        return self.processed / "dataset"

    @property
    def balanced(self) -> Path:
        return self.processed / "balanced"

    @property
    def label_issues(self) -> Path:
        return self.processed / "label_issues"

    @property
    def ablation(self) -> Path:
        return self.processed / "ablation"

    @property
    def ablation_predictions(self) -> Path:
        """Every ablation arm's and seed's answer for each FER2013 PrivateTest face."""
        return self.ablation / "predictions.parquet"

    @property
    def ablation_runs(self) -> Path:
        """Every finished ablation run, by key, for ``ferdata ablate`` to reuse."""
        return self.processed / "ablation_runs"

    @property
    def review(self) -> Path:
        return self.processed / "review"

    @property
    def reports(self) -> Path:
        return self.processed / "reports"

    @property
    def predictions(self) -> Path:
        return self.processed / "predictions.parquet"

    @property
    def private_test_predictions(self) -> Path:
        """Every FER2013 PrivateTest row's answer, as eval.json's fer2013_private_test scores them."""
        return self.processed / "fer2013_private_test.parquet"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def corrections(self) -> Path:
        return self.root / "corrections.csv"
