"""The embedded world: seeded, disjoint parts, tasks whose ground truth keeps the unnamed identity."""

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from cirbench.errors import UsageError
from cirbench.world.build import PRESETS, WorldConfig, _items, build, render

TINY = PRESETS["tiny"]


def test_same_seed_same_world_other_seed_other_world():
    a, b = _items(TINY), _items(TINY)
    assert a == b
    c = _items(replace(TINY, seed=1))
    assert c["pretrain"][0] != a["pretrain"][0]
    rng1, rng2 = np.random.default_rng(0), np.random.default_rng(0)
    it = a["test"][0]
    assert np.array_equal(render(it["shape"], it["color"], it["domain"], it["identity"], it["position"], 32, rng1),
                          render(it["shape"], it["color"], it["domain"], it["identity"], it["position"], 32, rng2))


def test_parts_are_disjoint_and_captions_never_name_the_identity():
    parts = _items(TINY)
    files = [it["file"] for items in parts.values() for it in items]
    assert len(files) == len(set(files))
    train_ids = {str(it["identity"]) for it in parts["train"]}
    test_ids = {str(it["identity"]) for it in parts["test"]}
    assert not train_ids & test_ids
    for it in parts["pretrain"]:
        assert it["shape"] in it["caption"]
        assert it["identity"]["pattern"] not in it["caption"] and "stripe" not in it["caption"]


def test_config_parsing_and_presets():
    assert WorldConfig.parse({"world": "tiny"}) == TINY
    assert WorldConfig.parse("world=tiny,seed=3").seed == 3
    assert WorldConfig.parse({}).spec() == ""
    assert WorldConfig.parse({"world": "tiny"}).spec().startswith("image_size=16,pretrain=1000")
    with pytest.raises(UsageError, match="unknown world option"):
        WorldConfig.parse({"colour": "1"})


def test_build_is_atomic_and_cached(tmp_path):
    folder = build(TINY, tmp_path)
    assert (folder / "world.json").is_file()
    image = Image.open(folder / _items(TINY)["test"][0]["file"])
    assert image.size == (TINY.image_size, TINY.image_size)
    mtime = (folder / "world.json").stat().st_mtime_ns
    assert build(TINY, tmp_path) == folder and (folder / "world.json").stat().st_mtime_ns == mtime
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_edit_task_targets_keep_identity_and_change_only_the_named_attribute(tmp_path):
    from cirbench.contracts.registry import datasets

    ds = datasets.get("world-edit")(tmp_path, {"world": "tiny"})
    parts = ds.world()["parts"]["test"]
    by_file = {it["file"]: it for it in parts}
    for split in ("color", "shape"):
        loaded = ds.load(split)
        assert len(loaded.queries) == TINY.test_ids * TINY.queries_per_id
        assert len(loaded.gallery) == TINY.test_ids * 6 * 6 * 2 and loaded.remove_reference is False
        for q in loaded.queries:
            ref = by_file[q.reference]
            assert len(q.targets) == 2 and ref["domain"] == "photo"
            for t in q.targets:
                tgt = by_file[t]
                assert tgt["identity"] == ref["identity"] and tgt["domain"] == "photo"
                changed = {a for a in ("shape", "color") if tgt[a] != ref[a]}
                assert changed == {split} and tgt[split] in q.text
    triplets = ds.train_triplets()
    assert triplets and all(t.reference.startswith("train/") and t.target.startswith("train/") for t in triplets)


def test_domain_task_positives_share_shape_and_colour_in_the_named_domain(tmp_path):
    from cirbench.contracts.registry import datasets

    ds = datasets.get("world-domain")(tmp_path, {"world": "tiny"})
    by_file = {it["file"]: it for it in ds.world()["parts"]["test"]}
    loaded = ds.load("sketch")
    assert loaded.prompts == {"pseudo": "a {text} of *", "text": "a {text} of ", "caption": "a {text} of "}
    for q in loaded.queries:
        ref = by_file[q.reference]
        assert len(q.targets) == TINY.test_ids and q.text == "sketch"
        for t in q.targets:
            assert by_file[t]["domain"] == "sketch"
            assert (by_file[t]["shape"], by_file[t]["color"]) == (ref["shape"], ref["color"])


def test_compact_vocabulary_training_gives_the_dense_models_weights(tmp_path):
    """Training on the captions' token ids only must end in the model dense training gives: the rows no
    caption uses (Pic2Word's `*`, the methods' prompt words) decayed by AdamW exactly as in dense training,
    the used rows and every other weight trained alike. A tiny world: two epochs, 16 px."""
    import torch

    from cirbench.world.encoder import train_small_clip

    config = replace(PRESETS["tiny"], pretrain=300, clip_epochs=2, clip_batch=64)
    world = build(config, tmp_path / "cache")
    dense = torch.load(train_small_clip(config, world, tmp_path / "dense", compact=False)
                       / "open_clip_pytorch_model.bin")
    compact = torch.load(train_small_clip(config, world, tmp_path / "compact") / "open_clip_pytorch_model.bin")
    assert dense.keys() == compact.keys()
    table = dense["token_embedding.weight"]
    assert table.shape[0] == 49408
    for key in dense:
        torch.testing.assert_close(compact[key], dense[key], rtol=1e-5, atol=1e-6, msg=key)
