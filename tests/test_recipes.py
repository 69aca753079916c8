"""The published recipes in pipelines/recipes/: full params files that every stage accepts,
in step with params.yaml, and one built end to end on generated data."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from ferdata.ablate import AblateParams
from ferdata.align import AlignParams
from ferdata.balance import BalanceParams
from ferdata.bias import BiasParams
from ferdata.cli import app
from ferdata.evaluate import EvaluateParams
from ferdata.ingest import IngestParams
from ferdata.label_issues import LabelIssuesParams
from ferdata.params import load_params, section
from ferdata.sample import write_sample
from ferdata.split import SplitParams
from ferdata.train import TrainParams

ROOT = Path(__file__).parent.parent
RECIPES = sorted((ROOT / "pipelines" / "recipes").glob("*.yaml"))
SECTIONS = {"ingest": IngestParams, "align": AlignParams, "split": SplitParams, "balance": BalanceParams,
            "train": TrainParams, "evaluate": EvaluateParams, "label_issues": LabelIssuesParams,
            "report": BiasParams, "ablate": AblateParams}


def test_there_is_a_recipe_per_published_protocol():
    assert len(RECIPES) == 5


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_stage_accepts_the_recipe_and_it_has_params_yamls_keys(path):
    recipe, main = load_params(path), load_params(ROOT / "params.yaml")
    assert set(recipe) == set(main)
    for name, cls in SECTIONS.items():
        assert set(recipe[name]) == set(main[name]), name
        cfg = section(recipe, name, cls)
        if hasattr(cfg, "check"):
            cfg.check()
    header = path.read_text().split("\nseed:")[0]
    assert header.startswith("# Preset:") and "reported figure" in header
    assert "What this preset gives on real data:" in header
    changed = [line for line in path.read_text().splitlines() if "# preset:" in line]
    assert changed, "a preset changes something"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_line_a_recipe_does_not_mark_has_params_yamls_value(path):
    recipe, main = load_params(path), load_params(ROOT / "params.yaml")
    unmarked, parents = [], []  # parents: (indent, key) of the mappings the line is in
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        while parents and parents[-1][0] >= indent:
            parents.pop()
        key, value = (part.strip() for part in line.split("#", 1)[0].split(":", 1))
        if not value:
            parents.append((indent, key))
        elif "# preset:" not in line:
            unmarked.append([k for _, k in parents] + [key])
    assert len(unmarked) > 40
    for keys in unmarked:
        ours, theirs = recipe, main
        for k in keys:
            ours, theirs = ours[k], theirs[k]
        assert ours == theirs, f"{path.name}: {'.'.join(keys)} is {ours!r}, params.yaml's is {theirs!r}"


def test_the_ckplus_jaffe_8_class_recipe_builds_on_generated_data(tmp_path):
    recipe = ROOT / "pipelines" / "recipes" / "wang-mbuthia-ckplus-jaffe-8-classes.yaml"
    # seed 3 draws CK+ sequences labelled contempt
    write_sample(tmp_path / "raw", fer2013_rows=30, ckplus_subjects=6, jaffe_subjects=3, rafdb_images=0,
                 affectnet_rows=0, folder_images=0, seed=3)
    result = CliRunner().invoke(app, ["build", "--params", str(recipe), "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    dataset = pq.read_table(tmp_path / "processed" / "dataset" / "manifest.parquet").to_pandas()
    assert set(dataset.source) == {"ckplus", "jaffe"}
    contempt = dataset[dataset.label == "contempt"]
    assert len(contempt) and (contempt.label_index == 7).all() and set(contempt.source) == {"ckplus"}
    for split, rows in dataset.groupby("split"):  # no person on two sides
        others = dataset[dataset.split != split]
        assert not set(rows.subject) & set(others.subject), split
    balanced = tmp_path / "processed" / "balanced"
    weights = json.loads((balanced / "class_weights.json").read_text())
    assert "contempt" in weights["by_name"]
    assert json.loads((balanced / "balance.json").read_text())["method"] == "none"
    assert (tmp_path / "processed" / "dataset" / "train" / "contempt").is_dir()
    assert yaml.safe_load(recipe.read_text())["train"]["class_weights"] is True
