"""The small CLIP's shipped weights: what `cirbench world rebuild` writes is what training produces,
a first run uses it instead of training, and any setting that changes training trains again."""

import json
from dataclasses import replace

import pytest
import torch

from cirbench.world import shipped
from cirbench.world.build import PRESETS, WorldConfig, build
from cirbench.world.encoder import clip_dir
from cirbench.world.small_clip import held_out_accuracy, train_small_clip

from cli_helpers import cirbench

TINY = replace(PRESETS["tiny"], pretrain=300)


def weights(folder):
    return torch.load(folder / "open_clip_pytorch_model.bin")


def test_rebuild_then_install_gives_the_trained_weights_bit_for_bit(tmp_path, monkeypatch):
    ship = tmp_path / "ship"
    path, record = shipped.rebuild(TINY, tmp_path / "cache", ship)
    assert path == ship / f"small-clip-{TINY.clip_key()}.pt"
    # the file leaves out the token table's untrained rows (49,408 x 128 floats): far smaller than the model
    assert path.stat().st_size < 0.5 * (49408 * 128 * 4)
    world = build(TINY, tmp_path / "cache")
    trained = weights(train_small_clip(TINY, world, tmp_path / "trained"))

    monkeypatch.setattr(shipped, "FOLDER", ship)
    folder = clip_dir(TINY, tmp_path / "cache")
    installed = weights(folder)
    assert installed.keys() == trained.keys()
    for key in trained:
        assert torch.equal(installed[key], trained[key]), key
    meta = json.loads((folder / "world_clip.json").read_text())
    assert meta["weights"].startswith(f"shipped with cirbench ({path.name}")
    assert meta["zero_shot_accuracy"] == record["zero_shot_accuracy"] == meta["shipped_zero_shot_accuracy"]
    assert meta["steps"] == record["steps"] > 0


def test_settings_that_change_training_train_again(tmp_path, monkeypatch):
    ship = tmp_path / "ship"
    shipped.rebuild(TINY, tmp_path / "cache", ship)
    monkeypatch.setattr(shipped, "FOLDER", ship)
    other = replace(TINY, clip_epochs=1)  # another clip key: no shipped file for it
    meta = json.loads((clip_dir(other, tmp_path / "cache") / "world_clip.json").read_text())
    assert meta["weights"] == "trained here"
    assert meta["steps"] == 3  # one epoch of 300 images in batches of 128: 128, 128, 44


def test_a_torch_that_initialises_differently_trains_instead(tmp_path, monkeypatch):
    ship = tmp_path / "ship"
    path, _ = shipped.rebuild(TINY, tmp_path / "cache", ship)
    blob = torch.load(path, weights_only=True)
    blob["initial_table_sha256"] = "0" * 64  # as if this torch drew another initial table
    torch.save(blob, path)
    monkeypatch.setattr(shipped, "FOLDER", ship)
    meta = json.loads((clip_dir(TINY, tmp_path / "cache") / "world_clip.json").read_text())
    assert meta["weights"] == "trained here"


def test_a_damaged_shipped_file_is_named(tmp_path, monkeypatch):
    from cirbench.errors import DataError

    ship = tmp_path / "ship"
    ship.mkdir()
    shipped.path_for(TINY, ship).write_bytes(b"not a torch file")
    monkeypatch.setattr(shipped, "FOLDER", ship)
    with pytest.raises(DataError, match="small-clip-.*not a readable"):
        clip_dir(TINY, tmp_path / "cache")


def test_the_package_ships_weights_for_the_default_world_that_unpack_to_their_record(tmp_path):
    """The shipped file rebuilds a model whose held-out accuracy is the one it records (its rows, decay
    factors and seeded initial table fit together)."""
    config = WorldConfig()
    path = shipped.path_for(config)
    assert path.is_file(), f"no shipped weights for the default world settings ({path.name}): run cirbench world rebuild"
    blob = shipped.read(path, config)
    model = shipped.unpack(config, blob)
    assert model is not None, "this torch initialises the small CLIP differently from the one that trained it"
    accuracy = held_out_accuracy(model, build(config, tmp_path / "cache"))
    assert {k: v for k, v in accuracy.items() if k != "images"} == blob["trained"]["zero_shot_accuracy"]


@pytest.mark.slow
def test_world_rebuild_reproduces_the_shipped_weights(tmp_path):
    """`cirbench world rebuild` from scratch gives what the package ships: bit for bit where the torch and
    the CPU are those it was trained with, and everywhere the same zero-shot accuracies within 2 points
    and the final loss within 5% (other CPUs' kernels round differently, and training compounds it)."""
    config = WorldConfig()
    ours = shipped.read(shipped.path_for(config), config)
    # about 8 minutes on an idle 2-core machine; the limit leaves room for a busy one
    out = cirbench("world", "rebuild", "--out", str(tmp_path / "ship"), "--quiet",
                   env={"CIRBENCH_CACHE": str(tmp_path / "cache")}, cwd=tmp_path, timeout=3600).stdout
    assert "wrote" in out
    again = shipped.read(shipped.path_for(config, tmp_path / "ship"), config)
    same_place = all(ours["trained"][k] == again["trained"][k] for k in ("torch", "machine"))
    for attr in ("shape", "color", "domain"):
        assert abs(again["trained"]["zero_shot_accuracy"][attr] - ours["trained"]["zero_shot_accuracy"][attr]) <= 2.0
    assert again["trained"]["final_loss"] == pytest.approx(ours["trained"]["final_loss"], rel=0.05)
    assert again["trained"]["steps"] == ours["trained"]["steps"]
    if same_place and all(torch.equal(again["state"][k], ours["state"][k]) for k in ours["state"]):
        assert torch.equal(again["used_rows"], ours["used_rows"])


def test_rebuild_into_a_folder_it_cannot_write_says_so_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cirbench("world", "rebuild", "--set", "world=tiny", "--out", str(blocker / "ship"), "--quiet",
                      env={"CIRBENCH_CACHE": str(tmp_path / "cache")}, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "cannot write the folder for the small CLIP's weights file" in result.stderr and "--out" in result.stderr
    assert not (tmp_path / "cache" / "world").exists()  # nothing rendered or trained first
