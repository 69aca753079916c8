"""params.yaml sections: defaults, the shared seed, and typos that must not pass silently."""

import re
from dataclasses import dataclass, field

import pytest

from ferdata.params import ParamsError, load_params, section


@dataclass
class Example:
    method: str = "smote"
    k_neighbors: int = 5
    ratio: float = 1.0
    seed: int = 0
    classes: list = field(default_factory=list)


def test_missing_keys_take_defaults_and_seed_is_shared():
    cfg = section({"seed": 7, "example": {"k_neighbors": 3}}, "example", Example)
    assert (cfg.method, cfg.k_neighbors, cfg.seed) == ("smote", 3, 7)


def test_a_section_seed_overrides_the_shared_one():
    assert section({"seed": 7, "example": {"seed": 1}}, "example", Example).seed == 1


def test_integer_given_for_a_float_is_accepted():
    assert section({"example": {"ratio": 1}}, "example", Example).ratio == 1.0


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ParamsError, match=r"\[example\].*k_neighbours"):
        section({"example": {"k_neighbours": 3}}, "example", Example)


def test_wrong_type_is_an_error_naming_the_key():
    with pytest.raises(ParamsError, match=r"example\]\.k_neighbors"):
        section({"example": {"k_neighbors": "five"}}, "example", Example)


def test_missing_params_file_is_named(tmp_path):
    with pytest.raises(ParamsError, match="nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def test_a_yaml_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 42\ntrain:\n  epochs: 60\n   batch_size: 128\n")
    with pytest.raises(ParamsError, match=r"params.yaml:4: not valid YAML: mapping values are not allowed here"):
        load_params(path)


def test_the_command_line_reports_a_missing_or_broken_params_file_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ferdata.cli import app

    monkeypatch.chdir(tmp_path)
    missing = CliRunner().invoke(app, ["build", "--sources", "fer2013"])
    assert missing.exit_code == 2
    assert missing.output.strip() == ("error: params.yaml: not found (run in a pipeline folder, "
                                      "or name the file with --params)")
    (tmp_path / "params.yaml").write_text("ingest: [fer2013\n")
    broken = CliRunner().invoke(app, ["train"])
    assert broken.exit_code == 2 and broken.output.startswith("error: params.yaml:2: not valid YAML")


@pytest.mark.parametrize("command", [["align"], ["split"], ["label-issues"], ["balance"], ["train"], ["evaluate"],
                                     ["report"], ["review", "--no-launch"], ["ablate"]])
def test_a_stage_run_before_its_inputs_exist_names_the_missing_file_in_one_line(tmp_path, monkeypatch, command):
    from typer.testing import CliRunner

    from ferdata.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: 42\n")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    assert re.fullmatch(r"error: \S+: not found; run the (stage that writes it|train stage) first\n", result.output)


def test_project_params_files_parse():
    from pathlib import Path

    root = Path(__file__).parent.parent
    for path in (root / "params.yaml", root / "pipelines" / "demo" / "params.yaml"):
        assert isinstance(load_params(path)["seed"], int)
