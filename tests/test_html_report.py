"""The HTML report in a real headless browser (Debian's chromium): it loads from disk with no console
errors, its tables hold the numbers of the result files, and its images render."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import colour_encoder
from cirbench.cli import app
from helpers import flat_dataset

colour_encoder.register()
G = "gallery/{}.png".format


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CIRBENCH_REQUIRE_BROWSER"):  # CI installs it: missing there is a failure
        pytest.fail("chromium is not installed (CI installs Debian's chromium; see .ci/run)")
    pytest.skip("chromium is not installed here (CI installs it)")


def browse(binary, url, *args):
    proc = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                           "--virtual-time-budget=3000", *args, url], capture_output=True, text=True, timeout=120)
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    root = flat_dataset(tmp / "ds", [{"reference": G("red"), "text": "make it blue", "target": G("blue")},
                                     {"reference": G("green"), "text": "yellow please", "target": G("yellow")},
                                     {"reference": G("blue"), "text": "now red", "target": G("red")}])
    result = CliRunner().invoke(app, ["run", "--dataset", str(root), "--encoder", "colour-test", "-m",
                                      "image-only,text-only,image+text", "--workers", "0", "--quiet", "--json",
                                      "--results-dir", str(tmp / "r"), "--cache-dir", str(tmp / "c")])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)["results"]
    out = CliRunner().invoke(app, ["report", "--results-dir", str(tmp / "r"), "--out", str(tmp / "reports"),
                                   "--latex", "--grid-queries", "3"])
    assert out.exit_code == 0, out.output
    return tmp / "reports", records


def test_the_page_loads_with_no_console_errors_and_holds_the_numbers(report):
    binary = chromium()
    folder, records = report
    dom, console = browse(binary, (folder / "index.html").as_uri(), "--dump-dom")
    assert 'data-status="ready"' in dom, dom[:500]
    assert not re.search(r'<body[^>]*data-errors=', dom) and console == []
    assert 'data-broken-images="0"' in dom
    for record in records:
        for metric in record["main_metrics"]:
            value = f"{record['metrics'][metric]:.2f} ["
            row = re.search(rf"<th>{re.escape(record['method']['name'])}</th>(.*?)</tr>", dom)
            assert row and value in row.group(1), (record["method"]["name"], metric)
    # the browser rendered the sampled queries
    assert "3 of 3 sampled queries" in dom and "make it blue" in dom
    # what results.md holds, the page holds too: contents, a matrix per main metric with Holm stated, the
    # paper-numbers section, each protocol with a filled prompt, the encoders
    assert re.search(r'<nav id="contents">Contents: <a href="#ds[^"]*">ds</a>', dom)
    for metric in ("R@1", "R@10", "R@50"):
        assert f"Paired comparisons, val {metric} (colour-test): row minus column; * p &lt; 0.05 after Holm" in dom
    for section in ("paper", "protocols", "encoders"):
        assert f'<h2 id="{section}">' in dom
    assert "<code>{text}</code> (e.g. <code>make it blue</code>)" in dom and "<code>colour-test</code> (model key" in dom


def test_a_grid_renders_in_the_browser(report, tmp_path):
    binary = chromium()
    folder, _records = report
    grids = sorted((folder / "grids").glob("*.png"))
    assert grids
    shot = tmp_path / "shot.png"
    browse(binary, grids[0].as_uri(), f"--screenshot={shot}", "--window-size=700,900")
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank page: thumbnails, text and outlines
    page = tmp_path / "page.png"
    browse(binary, (folder / "index.html").as_uri(), f"--screenshot={page}", "--window-size=1000,1400")
    assert np.asarray(Image.open(page).convert("L"), dtype=float).std() > 10


def test_latex_and_csv_exports(report):
    folder, records = report
    tex = (folder / "tables.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex and "image+text" in tex
    comparisons = (folder / "comparisons.csv").read_text().splitlines()
    assert comparisons[0].startswith("dataset,encoder,split,metric,method_a,method_b,difference,low,high,p")
    summary = (folder / "summary.csv").read_text().splitlines()[0]
    assert "val R@1 low" in summary and "val R@1 high" in summary


def test_a_new_render_removes_the_thumbnails_it_no_longer_shows(report):
    """Rendering other results into the same folder must not pile up the old thumbnails; files of other
    names are left alone; thumbnails are named by their bytes, so a second render names the same files."""
    folder, _ = report
    before = set(re.findall(r"thumbs/([0-9a-f]{16}\.jpg)", (folder / "index.html").read_text()))
    stale, own = folder / "thumbs" / "0123456789abcdef.jpg", folder / "thumbs" / "notes.txt"
    stale.write_bytes(b"old"), own.write_text("mine")
    results = folder.parent / "r"
    out = CliRunner().invoke(app, ["report", "--results-dir", str(results), "--out", str(folder), "--latex",
                                   "--grid-queries", "3"])
    assert out.exit_code == 0, out.output
    shown = set(re.findall(r"thumbs/([0-9a-f]{16}\.jpg)", (folder / "index.html").read_text()))
    assert shown == before and not stale.exists() and own.read_text() == "mine"
    assert {p.name for p in (folder / "thumbs").glob("*.jpg")} == shown
