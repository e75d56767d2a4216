"""A sweep keeps every setting (issue 33): each setting of a method -- its options that differ from
their defaults, or --label -- is a result of its own, a row of its own, and never one average or paired
test with another setting. Worked by hand on flat colours with the colour encoder (image feature = the
mean colour, text feature = the colour word), where slerp's ends are exact: t = 1 ranks by the text
alone, t = 0 by the reference image alone.

Gallery (folder order): blue 0, gray 1, green 2, red 3, white 4, yellow 5.
split a: red reference, "blue", target blue    t=1: blue first, R@1 100;  t=0: red first, R@1 0
split b: green reference, "yellow", target yellow  t=1: yellow first, R@1 100;  t=0: green first, R@1 0
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import colour_encoder
from cirbench.cli import app
from helpers import flat_dataset

colour_encoder.register()
G = "gallery/{}.png".format


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def two_splits(tmp_path):
    root = flat_dataset(tmp_path / "sweep", [])
    (root / "val.jsonl").unlink()
    (root / "a.jsonl").write_text(json.dumps({"reference": G("red"), "text": "blue", "target": G("blue")}) + "\n")
    (root / "b.jsonl").write_text(json.dumps({"reference": G("green"), "text": "yellow", "target": G("yellow")}) + "\n")
    return root


def run(tmp_path, root, *args):
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "slerp", "--workers", 0, "--quiet",
                       "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c", *args)
    assert code == 0, out
    return out


def test_two_settings_on_two_splits_stay_apart_in_files_tables_and_tests(tmp_path, two_splits):
    out = run(tmp_path, two_splits, "-o", "slerp.t=1")
    assert "slerp [t=1.0]" in out  # the run's own table names the setting
    run(tmp_path, f"{two_splits}:a", "-o", "slerp.t=0")
    names = sorted(p.relative_to(tmp_path / "r").as_posix().split("/", 2)[2] for p in (tmp_path / "r").rglob("*.json"))
    assert len(names) == 3 and sum("/slerp~t_0.0" in n for n in names) == 1 and sum("/slerp~t_1.0" in n for n in names) == 2
    code, out = invoke("report", "--results-dir", tmp_path / "r", "--out", tmp_path / "o", "--no-grids", "--no-html",
                       "--bootstrap", 100)
    assert code == 0, out
    md = (tmp_path / "o" / "results.md").read_text()
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[3:-1]] for line in md.splitlines()
            if line.startswith("| colour-test | slerp")}
    # columns: a R@1, a R@10, a R@50, b ..., average ...: each row reads only its own setting
    assert rows["slerp [t=1.0]"][0].startswith("100.00") and rows["slerp [t=1.0]"][3].startswith("100.00")
    assert rows["slerp [t=1.0]"][6].startswith("100.00")  # the average of its own two splits
    assert rows["slerp [t=0.0]"][0].startswith("0.00") and rows["slerp [t=0.0]"][3] == ""
    assert rows["slerp [t=0.0]"][6] == ""  # one split: no average (never 0 and 100 mixed into 50)
    assert "50.00" not in md
    protocol = [line for line in md.splitlines() if line.startswith("| colour-test | sweep | slerp")]
    assert len(protocol) == 2 and "t=0.0" in protocol[0] + protocol[1] and "t=1.0" in protocol[0] + protocol[1]
    # the paired test of the two settings: split a only, 100 points apart
    code, out = invoke("compare", "slerp [t=1.0]", "slerp [t=0.0]", "--results-dir", tmp_path / "r", "--json",
                       "--bootstrap", 100)
    assert code == 0, out
    pairs = json.loads(out[out.index("["):])
    assert {(p["split"], p["metric"], p["difference"]) for p in pairs if p["metric"] == "R@1"} == {("a", "R@1", 100.0)}
    code, out = invoke("compare", "slerp", "slerp [t=0.0]", "--results-dir", tmp_path / "r")
    assert code == 2 and "no result files of method 'slerp'" in out and "slerp [t=0.0], slerp [t=1.0]" in out


def test_a_rerun_of_one_setting_replaces_its_own_result_and_says_so(tmp_path, two_splits):
    run(tmp_path, f"{two_splits}:a", "-o", "slerp.t=0")
    run(tmp_path, f"{two_splits}:a")  # the default setting: a result of its own
    out = run(tmp_path, f"{two_splits}:a", "-o", "slerp.t=0", "--overwrite")
    (note,) = [line for line in out.splitlines() if line.startswith("note: replaced")]
    assert "slerp~t_0.0" in note and note.endswith("the earlier result of slerp [t=0.0] on sweep:a (the same setting)")
    assert len(list((tmp_path / "r").rglob("*.json"))) == 2


def test_a_label_names_the_setting_and_results_can_be_listed_and_pruned(tmp_path, two_splits):
    run(tmp_path, f"{two_splits}:a", "-o", "slerp.t=0", "--label", "image end")
    run(tmp_path, f"{two_splits}:a")
    code, out = invoke("results", "list", "--results-dir", tmp_path / "r")
    assert code == 0
    listed = [line.split("\t")[:2] for line in out.splitlines() if "\t" in line]
    assert listed == [["slerp", "sweep:a"], ["slerp [image end]", "sweep:a"]]
    assert "2 result file(s), 2 method setting(s)" in out
    code, out = invoke("results", "prune", "--method", "slerp", "--setting", "t=0.5", "--results-dir", tmp_path / "r")
    assert code == 2 and "its settings there: default, image end" in out
    code, out = invoke("results", "prune", "--method", "slerp", "--setting", "image end", "--results-dir", tmp_path / "r")
    assert code == 0 and out.count("deleted ") >= 2  # the result and its outcomes
    code, out = invoke("results", "list", "--results-dir", tmp_path / "r")
    assert [line.split("\t")[0] for line in out.splitlines() if "\t" in line] == ["slerp"]


def test_options_equal_to_their_defaults_are_the_default_setting():
    from cirbench.contracts.method import Option, setting_of

    declared = {"lam": Option(float, 0.5), "fusion": Option(str, "weighted"), "t": Option(float, None),
                "model": Option(str, None, in_setting=False), "flag": Option(bool, False)}
    assert setting_of(declared, {"lam": 0.5, "fusion": "weighted", "t": None, "model": "x", "flag": False}) == ""
    assert setting_of(declared, {"lam": 0.3, "fusion": "max", "t": 1.0, "flag": True}) == \
        "flag=true, fusion=max, lam=0.3, t=1.0"
    assert setting_of(declared, {"lam": 0.3}, label="mine") == "mine"
