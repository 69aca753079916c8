"""The FiftyOne App end to end: served on 127.0.0.1, rendered by headless Chromium.

The screenshot lands in test-artifacts/review_app.png for a person to look at.
"""

import json
import re
import socket
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from fiftyone_fixture import fo, predictions_table, write_dataset_dir  # noqa: F401
from helpers import synthetic_dataset
from PIL import Image

from ferdata.manifest import write_table
from ferdata.review import app_url, build_review_dataset, launch

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
NAME = "app-test"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium(url: str, profile: Path, *args: str) -> str:
    """Run headless Chromium on ``url`` with a fresh profile; its standard output."""
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--window-size=1400,900", "--virtual-time-budget=15000", *args, url],
        capture_output=True, text=True, timeout=180, check=True)
    return done.stdout


SAMPLE_COUNT = re.compile(r'data-cy="entry-count-(?:part|all)"[^>]*>([\d,]+)</span> samples')


def shown_count(url: str, profile: Path, attempts: int = 3) -> int | None:
    """The sample count the App's grid header shows at ``url`` (a dataset or a saved view).
    On a busy machine Chromium's time budget can end before the grid has its count, so the
    page is read again, up to ``attempts`` times; None if it never shows one."""
    for attempt in range(attempts):
        match = SAMPLE_COUNT.search(chromium(url, profile / str(attempt), "--dump-dom"))
        if match:
            return int(match.group(1).replace(",", ""))
    return None


@pytest.fixture(scope="module")
def app(fo, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("app")
    table = synthetic_dataset({"train": [6] * 7, "test": [3] * 7})
    write_dataset_dir(table, root / "dataset")
    write_table(predictions_table(table, error_rate=0.3), root / "predictions.parquet")
    dataset = build_review_dataset(NAME, root / "dataset", root / "predictions.parquet", top_mistakes=10)
    port = free_port()
    session = launch(dataset, port=port, wait=False)
    yield dataset, port
    session.close()


def test_app_server_answers_with_the_dataset_and_its_saved_views(app):
    dataset, port = app
    query = '{ dataset(name: "%s") { name estimatedSampleCount savedViews { name } } }' % NAME
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)["data"]["dataset"]
    assert answer["estimatedSampleCount"] == len(dataset) == 63
    assert [v["name"] for v in answer["savedViews"]] == dataset.list_saved_views()


def screenshot(url: str, profile: Path, shot: Path, attempts: int = 3) -> Image.Image:
    """A screenshot of the App at ``url``, in grey. A cold App can still show its loading
    screen (a nearly uniform page) when Chromium's time budget ends, so a uniform page is
    taken again, up to ``attempts`` times."""
    for attempt in range(attempts):
        shot.unlink(missing_ok=True)
        chromium(url, profile / str(attempt), f"--screenshot={shot}")
        with Image.open(shot) as img:
            grey = img.convert("L")
        if np.asarray(grey).std() > 20:
            break
    return grey


def test_headless_chromium_renders_the_dataset_and_a_saved_view(app, tmp_path):
    dataset, port = app
    url = app_url("127.0.0.1", port, NAME)
    ARTIFACTS.mkdir(exist_ok=True)
    img = screenshot(url, tmp_path / "profile-shot", ARTIFACTS / "review_app.png")
    assert img.size == (1400, 900)
    assert np.asarray(img).std() > 20  # a rendered page, not a blank one

    assert shown_count(url, tmp_path / "profile-dom") == len(dataset)
    view_url = url + "?view=likely-mislabeled"
    assert shown_count(view_url, tmp_path / "profile-view") == len(dataset.load_saved_view("likely-mislabeled")) == 10
