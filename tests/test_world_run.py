"""`cirbench run` with no dataset: the embedded benchmark, end to end, in a miniature world."""

import json

import pytest

from cli_helpers import cirbench

pytestmark = pytest.mark.slow

METHODS = {"image-only", "text-only", "image+text", "pic2word", "combiner"}
SPLITS = {("world-edit", "color"), ("world-edit", "shape"), ("world-domain", "sketch"),
          ("world-domain", "cartoon"), ("world-domain", "painting")}


def test_default_run_trains_everything_once_then_reuses(tmp_path):
    env = {"CIRBENCH_CACHE": str(tmp_path / "cache")}
    args = ["--set", "world=tiny", "--workers", "0"]
    first = json.loads(cirbench("run", *args, "--json", cwd=tmp_path, env=env).stdout)
    cells = {(c["dataset"], c["split"], c["method"]): c["status"] for c in first["cells"] if c["method"] != "searle"}
    assert set(cells) == {(d, s, m) for d, s in SPLITS for m in METHODS}
    assert set(cells.values()) == {"computed"}
    for record in first["results"]:
        assert record["encoder"]["kind"] == "world"
        acc = record["encoder"]["zero_shot_accuracy"]
        assert set(acc) >= {"shape", "color", "domain"}
        if record["method"]["name"] == "combiner":
            assert record["method"]["config"]["train_dataset"] == record["dataset"]["name"]

    # the artefacts exist once, keyed by the settings that made them
    cache = tmp_path / "cache"
    assert len(list((cache / "world").glob("*/world.json"))) == 1
    assert len(list((cache / "world").glob("*/clip-*/world_clip.json"))) == 1
    assert len(list((cache / "checkpoints" / "pic2word").rglob("*.pt"))) == 1
    assert len(list((cache / "checkpoints" / "combiner").rglob("*.pt"))) == 2

    second = json.loads(cirbench("run", *args, "--json", cwd=tmp_path, env=env).stdout)
    assert {c["status"] for c in second["cells"] if c["method"] != "searle"} == {"reused"}

    table = cirbench("run", *args, cwd=tmp_path, env=env).stdout
    assert "world-edit" in table and "world-domain" in table and "pic2word" in table

    # a changed training setting retrains what depends on it, and only that
    changed = json.loads(cirbench("run", *args, "--set", "combiner_epochs=1", "-m", "combiner,image-only", "--json",
                                  cwd=tmp_path, env=env).stdout)
    status = {(c["dataset"], c["split"], c["method"]): c["status"] for c in changed["cells"]}
    assert {s for (d, sp, m), s in status.items() if m == "combiner"} == {"computed"}
    assert {s for (d, sp, m), s in status.items() if m == "image-only"} == {"reused"}
    assert len(list((cache / "checkpoints" / "combiner").rglob("*.pt"))) == 4
    assert len(list((cache / "world").glob("*/clip-*/world_clip.json"))) == 1
    assert len(list((cache / "checkpoints" / "pic2word").rglob("*.pt"))) == 1

    reports = cirbench("report", cwd=tmp_path, env=env).stdout
    md = (tmp_path / "reports" / "results.md").read_text()
    assert "zero-shot attribute accuracy" in md and "## world-edit" in md and "## world-domain" in md
    assert "world-edit.png" in reports


def test_train_command_is_the_same_on_the_world(tmp_path):
    env = {"CIRBENCH_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "p2w.pt"
    path = cirbench("train", "pic2word", "--dataset", "world-edit", "--set", "world=tiny", "--epochs", "1",
                    "--out", out, "--workers", "0", "--quiet", cwd=tmp_path, env=env).stdout.strip()
    assert path == str(out) and out.is_file()
    proc = cirbench("run", "-m", "pic2word", "--dataset", "world-domain:sketch", "--set", "world=tiny",
                    "--checkpoint", out, "--workers", "0", "--json", cwd=tmp_path, env=env)
    record = json.loads(proc.stdout)["results"][0]
    assert record["method"]["config"]["checkpoint"]["path"] == str(out.resolve())
