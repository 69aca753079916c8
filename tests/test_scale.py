"""The per-face stages on a real Dask cluster (worker processes): the same bytes as the local
pool, sharded outputs, rejects for unreadable faces, and a worker killed mid-run that
changes nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from distributed import WorkerPlugin
from typer.testing import CliRunner

from ferdata.align import AlignParams, run_align
from ferdata.cli import app
from ferdata.executor import Executor, ExecutorParams, open_executor
from ferdata.ingest import IngestParams, run_ingest
from ferdata.sample import write_sample
from ferdata.split import SplitParams, run_split

PARAMS = Path(__file__).parent.parent / "params.yaml"
SOURCES = ["fer2013", "ckplus", "jaffe", "raf-db", "affectnet"]
PARTITION = 24  # several shards from a small sample


def _tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path, as a sha1 of its bytes."""
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> tuple[Path, str]:
    """A small sample of five sources, one AffectNet image cut short; and that row's location."""
    raw = tmp_path_factory.mktemp("scale") / "raw"
    write_sample(raw, fer2013_rows=40, ckplus_subjects=1, jaffe_subjects=1, rafdb_images=10, affectnet_rows=24,
                 folder_images=0, seed=3)
    csv = (raw / "affectnet" / "training.csv").read_text().splitlines()
    line = next(k for k, row in enumerate(csv, 1) if k > 1 and row.split(",")[6] in "0123456")
    image = raw / "affectnet" / "Manually_Annotated_Images" / csv[line - 1].split(",")[0]
    image.write_bytes(image.read_bytes()[:200])
    return raw, f"training.csv:{line}"


@pytest.fixture(scope="module")
def local(raw) -> Path:
    out = raw[0].parent / "local"
    with open_executor(ExecutorParams(kind="local", workers=2, partition_size=PARTITION)) as pool:
        _build(raw[0], out, pool)
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[Executor]:
    """A dask executor on a LocalCluster of two worker processes that it starts itself."""
    with open_executor(ExecutorParams(kind="dask", workers=2, partition_size=PARTITION)) as pool:
        yield pool


def _build(raw: Path, out: Path, pool: Executor) -> None:
    run_ingest(IngestParams(sources=SOURCES), raw, out / "interim", None, pool)
    run_align(AlignParams(), out / "interim", raw, out / "aligned", pool)
    run_split(SplitParams(), out / "aligned", out / "dataset", executor=pool)


class CountTasks(WorkerPlugin):
    """Counts the tasks of one function that its worker runs."""

    name = "count-tasks"

    def __init__(self, function: str) -> None:
        self.function, self.count = function, 0

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing" and self.function in str(key):
            self.count += 1


def _counted(dask_worker) -> int:
    return dask_worker.plugins[CountTasks.name].count


def test_dask_build_writes_the_same_bytes_as_the_local_pool(raw, local, cluster):
    out = raw[0].parent / "dask"
    cluster.client.register_plugin(CountTasks("write_shard_pngs"))
    try:
        _build(raw[0], out, cluster)
        png_tasks = sum(cluster.client.run(_counted).values())
    finally:
        cluster.client.unregister_worker_plugin(CountTasks.name)
    assert _tree(out) == _tree(local)

    manifest = out / "dataset" / "manifest.parquet"
    shards = sorted(p.name for p in manifest.iterdir())
    rows = pq.read_table(manifest).num_rows
    assert shards == [f"part-{k:05d}.parquet" for k in range(-(-rows // PARTITION))]
    assert rows > 2 * PARTITION
    assert png_tasks == len(shards)  # the workers wrote the class-folder PNGs, a shard a task
    assert len(list((out / "dataset").glob("*/*/*.png"))) == rows
    ids = pq.read_table(out / "aligned" / "aligned.parquet", columns=["sample_id"])["sample_id"].to_pylist()
    assert ids == sorted(ids)

    rejects = pq.read_table(out / "interim" / "rejects.parquet").to_pylist()
    cut = [r for r in rejects if r["location"] == raw[1]]
    assert [(r["reason"], r["kind"]) for r in cut] == [("unreadable_image", "rejected")]
    assert "Manually_Annotated_Images/" in cut[0]["message"]


class KillOnce(CountTasks):
    """Kills its worker process when it starts its second align task, once per cluster: the
    first worker to create ``marker`` dies."""

    name = "kill-once"

    def __init__(self, marker: str) -> None:
        super().__init__("align_chunk")
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:
        before = self.count
        super().transition(key, start, finish, **kwargs)
        if before == 1 and self.count == 2:  # this transition started its second align task
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_run_changes_nothing(raw, local, cluster, tmp_path):
    """``ferdata align`` connected to the running cluster by its address; a worker dies."""
    marker = tmp_path / "killed"
    client = cluster.client
    client.register_plugin(KillOnce(str(marker)))
    try:
        before = set(client.run(os.getpid).values())
        params = yaml.safe_load(PARAMS.read_text())
        params["executor"] = {"kind": "dask", "address": cluster.cluster.scheduler_address,
                              "partition_size": PARTITION}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        shutil.copytree(local / "interim", tmp_path / "processed" / "interim")
        result = CliRunner().invoke(app, ["align", "--params", str(tmp_path / "params.yaml"), "--root", str(tmp_path),
                                          "--raw-dir", str(raw[0])])
        assert result.exit_code == 0, result.output
        after = set(client.run(os.getpid).values())
    finally:
        client.unregister_worker_plugin(KillOnce.name)
    assert marker.exists() and before - after  # a worker process died mid-run
    assert _tree(tmp_path / "processed" / "aligned") == _tree(local / "aligned")


def test_fiftyone_imports_in_a_process_that_has_used_dask():
    # dask brings importlib-metadata, whose newer releases break FiftyOne's import once loaded
    done = subprocess.run([sys.executable, "-c", "import distributed, dask.dataframe, fiftyone"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
