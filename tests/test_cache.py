import os
import time

import numpy as np

from cirbench.cache import FeatureCache, item_key
from cirbench.engine import FeatureStore
from helpers import render


def test_put_get_roundtrip_and_survives_a_new_instance(tmp_path):
    cache = FeatureCache(tmp_path, "enc")
    feats = np.arange(6, dtype=np.float32).reshape(3, 2)
    cache.put(["a", "b", "c"], feats)
    again = FeatureCache(tmp_path, "enc").get(["c", "x", "a"])
    assert set(again) == {0, 2}
    assert again[0].tolist() == [4, 5] and again[2].tolist() == [0, 1]


def test_corrupt_shard_is_dropped_and_rebuilt(tmp_path):
    cache = FeatureCache(tmp_path, "enc")
    cache.put(["a"], np.ones((1, 4), dtype=np.float32))
    npy = next((tmp_path / "features" / "enc").glob("*.npy"))
    npy.write_bytes(npy.read_bytes()[:-4] + b"\0\0\0\1")
    fresh = FeatureCache(tmp_path, "enc")
    assert fresh.get(["a"]) == {}
    assert not list((tmp_path / "features" / "enc").glob("*"))


def test_half_written_entry_is_invisible(tmp_path):
    cache = FeatureCache(tmp_path, "enc")
    cache.put(["a"], np.ones((1, 4), dtype=np.float32))
    # an interrupted write leaves only a temporary file: no index, no entry
    (tmp_path / "features" / "enc" / ".x.npy.123.tmp").write_bytes(b"partial")
    assert set(FeatureCache(tmp_path, "enc").get(["a", "b"])) == {0}


def test_item_key_changes_when_the_image_changes(tmp_path):
    path = render(tmp_path / "a.png", "circle", "red")
    before = item_key(path)
    render(path, "square", "blue")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000))
    assert item_key(path) != before


def test_feature_store_encodes_once_then_hits(tmp_path, tiny_encoder):
    paths = [render(tmp_path / f"{c}.png", "circle", c) for c in ("red", "green", "blue")]
    store = FeatureStore(tiny_encoder, tmp_path / "cache", batch_size=2, workers=0)
    first, bad = store.features(paths)
    assert not bad and store.misses == 3 and store.hits == 0
    second, _ = FeatureStore(tiny_encoder, tmp_path / "cache", batch_size=2, workers=0).features(paths)
    assert np.allclose(first.numpy(), second.numpy())
    store2 = FeatureStore(tiny_encoder, tmp_path / "cache", batch_size=2, workers=0)
    render(paths[1], "square", "green")
    os.utime(paths[1], ns=(time.time_ns(), time.time_ns() + 10_000))
    store2.features(paths)
    assert (store2.hits, store2.misses) == (2, 1)


def test_unreadable_image_is_reported_not_dropped(tmp_path, tiny_encoder):
    good = render(tmp_path / "ok.png", "circle", "red")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    feats, bad = FeatureStore(tiny_encoder, tmp_path / "c", 4, 0).features([good, broken])
    assert [pos for pos, _ in bad] == [1] and np.isnan(feats[1].numpy()).all()


def test_text_features_are_deduplicated_and_cached_on_disk(tmp_path, tiny_encoder):
    import torch

    from cirbench.engine import TextFeatures

    calls = []
    real = tiny_encoder.encode_texts

    def counting(texts):
        calls.append(list(texts))
        return real(texts)

    tiny_encoder.encode_texts = counting
    try:
        first = TextFeatures(tiny_encoder, tmp_path)(["a red dog", "a cat", "a red dog"])
        assert calls == [["a red dog", "a cat"]]
        again = TextFeatures(tiny_encoder, tmp_path)(["a cat", "a red dog", "a new one"])
        assert calls[1:] == [["a new one"]]
    finally:
        tiny_encoder.encode_texts = real
    assert torch.equal(first[0], again[1]) and torch.equal(first[1], again[0])
    assert torch.allclose(again[2], real(["a new one"])[0])


def test_cache_info_and_clear_from_the_cli(tmp_path):
    from typer.testing import CliRunner

    from cirbench.cli import app

    FeatureCache(tmp_path, "enc1").put(["a", "b"], np.ones((2, 4), dtype=np.float32))
    FeatureCache(tmp_path, "enc2").put(["c"], np.ones((1, 4), dtype=np.float32))
    FeatureCache(tmp_path, "enc1", kind="text").put(["t"], np.ones((1, 4), dtype=np.float32))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "keep.pt").write_bytes(b"x")
    out = CliRunner().invoke(app, ["cache", "info", "--cache-dir", str(tmp_path)]).output
    assert "features  enc1  2 entries" in out and "features  enc2  1 entries" in out and "text      enc1  1" in out
    CliRunner().invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path), "--encoder-key", "enc2"])
    assert FeatureCache(tmp_path, "enc2").get(["c"]) == {} and set(FeatureCache(tmp_path, "enc1").get(["a"])) == {0}
    CliRunner().invoke(app, ["cache", "clear", "--cache-dir", str(tmp_path)])
    assert FeatureCache(tmp_path, "enc1").get(["a"]) == {} and (tmp_path / "checkpoints" / "keep.pt").is_file()


def test_a_file_listed_twice_is_encoded_once(tmp_path, tiny_encoder):
    a = render(tmp_path / "a.png", "circle", "red")
    b = render(tmp_path / "b.png", "square", "blue")
    store = FeatureStore(tiny_encoder, tmp_path / "cache", batch_size=4, workers=0)
    feats, bad = store.features([a, b, a, a])
    assert store.misses == 2 and not bad
    assert np.array_equal(feats[0].numpy(), feats[2].numpy()) and np.array_equal(feats[0].numpy(), feats[3].numpy())
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    _feats, bad = FeatureStore(tiny_encoder, tmp_path / "c2", 4, 0).features([broken, a, broken])
    assert [pos for pos, _ in bad] == [0, 2]
