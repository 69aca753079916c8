"""The demo pipeline runs the main pipeline's stages on generated data: keep them in step."""

import ast
import functools
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
DEMO = ROOT / "pipelines" / "demo"
ABLATE = ROOT / "pipelines" / "ablate"
#: The module that runs each stage, where it is not named after the stage.
STAGE_MODULES = {"report": "bias"}
#: Modules a stage imports that cannot change what it writes: they only print progress.
PRINT_ONLY = {"ferdata/progress.py"}


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


def _module_file(name: str) -> Path | None:
    """The file of the dotted module ``name`` under ROOT, if it is one of ours."""
    base = ROOT / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module ``node`` imports from, a relative import resolved against ``path``'s package."""
    if not node.level:
        return node.module or ""
    package = path.relative_to(ROOT).parent.parts
    return ".".join([*package[:len(package) - node.level + 1], *filter(None, [node.module])])


@functools.cache
def _imported_files(path: Path) -> frozenset[Path]:
    """The ferdata modules ``path`` imports anywhere in it, type-checking imports aside."""
    found, todo = set(), [ast.parse(path.read_text())]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node, path)
            ours = module.startswith("ferdata")
            names = [module, *(f"{module}.{alias.name}" for alias in node.names)] if ours else []
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("ferdata")]
        else:
            names = []
        found |= {f for f in map(_module_file, names) if f}
        todo.extend(ast.iter_child_nodes(node))
    return frozenset(found)


def _code_of(module: str) -> set[str]:
    """``module``'s file and every ferdata file it imports, directly or not (packages'
    ``__init__.py`` and print-only modules aside), relative to ROOT."""
    seen, todo = set(), [ROOT / "ferdata" / f"{module}.py"]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_imported_files(path))
    return {str(p.relative_to(ROOT)) for p in seen if p.name != "__init__.py"} - PRINT_ONLY


def _listed_code(deps: list[str]) -> set[str]:
    """The ferdata files a stage's deps name (a folder stands for its modules)."""
    files = set()
    for dep in (d.removeprefix("../../") for d in deps):
        if dep.startswith("ferdata/"):
            path = ROOT / dep
            files |= {str(p.relative_to(ROOT)) for p in path.glob("*.py")} if path.is_dir() else {dep}
    return {f for f in files if not f.endswith("__init__.py")}


@pytest.mark.parametrize("folder", [ROOT, ABLATE, DEMO], ids=["main", "ablate", "demo"])
def test_every_stage_depends_on_exactly_the_code_it_runs(folder: Path):
    """dvc repro re-runs a stage when code it runs changes, and only then: its deps name the
    stage's module and every ferdata module that imports, directly or not."""
    for name, stage in _load(folder / "dvc.yaml")["stages"].items():
        listed, runs = _listed_code(stage["deps"]), _code_of(STAGE_MODULES.get(name, name))
        assert listed == runs, (f"{folder / 'dvc.yaml'}: stage {name!r} misses {sorted(runs - listed)} "
                                f"and lists {sorted(listed - runs)}, which it does not run")
