"""The demo pipeline runs the main pipeline's stages on generated data: keep them in step."""

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "pipelines" / "demo"
ABLATE = ROOT / "pipelines" / "ablate"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _main_stages() -> dict:
    """The main pipeline's stages, then the ablation's (run from the top: its wdir is ../..)."""
    ablate = {name: {k: v for k, v in stage.items() if k != "wdir"}
              for name, stage in _load(ABLATE / "dvc.yaml")["stages"].items()}
    return {**_load(ROOT / "dvc.yaml")["stages"], **ablate}


def test_demo_runs_the_main_stages_after_generating_its_data():
    main = _main_stages()
    demo = _load(DEMO / "dvc.yaml")["stages"]
    assert list(demo) == ["sample", *main]
    for name, stage in main.items():
        mirrored = yaml.safe_load(yaml.safe_dump(stage).replace("- ferdata/", "- ../../ferdata/"))
        assert demo[name] == mirrored, f"demo stage {name!r} differs from the main pipeline's"


def test_the_ablation_runs_in_the_main_pipelines_folder_and_reads_its_outputs():
    [stage] = _load(ABLATE / "dvc.yaml")["stages"].values()
    assert stage["wdir"] == "../.."
    made = {out for s in _load(ROOT / "dvc.yaml")["stages"].values() for out in s.get("outs", [])}
    for dep in stage["deps"]:
        assert dep in made or (ROOT / dep).exists(), f"{ABLATE / 'dvc.yaml'}: missing dep {dep}"


def test_every_dependency_exists_or_is_another_stages_output():
    for folder in (ROOT, DEMO):
        stages = _load(folder / "dvc.yaml")["stages"].values()
        outputs = {out if isinstance(out, str) else next(iter(out)) for s in stages for out in s.get("outs", [])}
        for stage in stages:
            for dep in stage.get("deps", []):
                made = dep in outputs or any(dep.startswith(out + "/") for out in outputs)
                assert made or (folder / dep).exists(), f"{folder / 'dvc.yaml'}: missing dep {dep}"


def test_demo_params_have_the_main_sections():
    main, demo = _load(ROOT / "params.yaml"), _load(DEMO / "params.yaml")
    assert set(demo) == set(main) | {"sample"}
    for name, section in main.items():
        if isinstance(section, dict):
            assert set(demo[name]) == set(section), f"params section {name!r} differs in keys"


def test_no_pipelines_lock_file_is_git_ignored():
    """DVC refuses to run (``dvc.lock is git-ignored``) when a pipeline's lock file is ignored."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    locks = [str(folder.relative_to(ROOT) / "dvc.lock") for folder in (ROOT, DEMO, ABLATE)]
    ignored = subprocess.run(["git", "check-ignore", *locks], cwd=ROOT, capture_output=True, text=True).stdout
    assert ignored.split() == []
