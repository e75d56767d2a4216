"""The command line says what a newcomer needs next (issue 33): each option with its default and help,
which datasets have data under the data root, where to get one that has none, and a dry run of `data get`
without a data root, with the total size."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cirbench.cli import app


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_list_methods_shows_each_option_with_its_default_and_help():
    code, out = invoke("list", "methods")
    assert code == 0
    lines = out.splitlines()
    weicom = lines.index(next(x for x in lines if x.startswith("weicom ")))
    assert lines[weicom + 1].strip() == "-o weicom.lam=FLOAT (default 0.5)  weight of the text similarity (0: image only, " \
                                        "1: text only)"
    slerp = next(x for x in lines if x.strip().startswith("-o slerp.t=FLOAT"))
    assert "(default per dataset: circo 0.8, fashioniq 0.8, cirr 0.9; elsewhere 0.8)" in slerp


def test_list_datasets_says_where_data_is_and_how_to_get_it(tmp_path):
    (tmp_path / "cirr").mkdir()
    code, out = invoke("list", "datasets", "--data-root", tmp_path)
    assert code == 0
    lines = out.splitlines()

    def status(name):
        return lines[lines.index(next(x for x in lines if x.startswith(f"{name} "))) + 1].strip()

    assert status("cirr") == f"data: found at {tmp_path / 'cirr'}"
    assert status("circo") == f"data: none at {tmp_path / 'circo'} (cirbench data get circo)"
    assert status("world-edit") == "data: built by cirbench itself (no download)"
    assert status("folder") == "data: a folder you give (--dataset PATH)"
    assert "FashionIQ val: dress, shirt, toptee (R@1/5/10/50, R@10 and R@50 in the tables" in out


def test_a_dataset_without_data_points_at_data_get(tmp_path):
    code, out = invoke("run", "-m", "image-only", "--dataset", "circo", "--data-root", tmp_path, "--quiet")
    assert code == 2 and "`cirbench data get circo --data-root PATH` fetches what can be fetched" in out


def test_data_get_dry_run_needs_no_data_root_and_adds_up_the_sizes(tmp_path, monkeypatch):
    monkeypatch.delenv("CIRBENCH_DATA_ROOT", raising=False)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"dataset": "circo", "files": [
        {"url": "http://x/a.json", "size": 1024, "to": "annotations"},
        {"url": "http://x/b.zip", "size": 2048, "archive": "zip"},
        {"url": "http://x/c.zip", "archive": "zip"}]}))
    code, out = invoke("data", "get", "circo", "--manifest", manifest, "--dry-run", "--quiet")
    assert code == 0, out
    assert "a.json: would fetch http://x/a.json (1.0 KiB), saved in <data root>/circo/annotations" in out
    assert out.strip().splitlines()[-1] == "total: 3.0 KiB in 2 part(s) of known size, and 1 part(s) whose size the " \
                                          "manifest does not give"
