import os
import re
import time

import numpy as np
import pytest

from cirbench.storage.cache import FeatureCache
from cirbench.storage.content_keys import ContentKeys
from cirbench.storage.features import FeatureStore
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
    shard = str(npy.with_suffix(""))  # the warning names the shard it drops
    with pytest.warns(UserWarning, match=re.escape(f"{shard} is corrupt (checksum mismatch); it will be rebuilt")):
        assert fresh.get(["a"]) == {}
    assert [p.name for p in (tmp_path / "features" / "enc").iterdir()] == [".cirbench-feature-cache"]  # shard gone


def test_half_written_entry_is_invisible(tmp_path):
    cache = FeatureCache(tmp_path, "enc")
    cache.put(["a"], np.ones((1, 4), dtype=np.float32))
    # an interrupted write leaves only a temporary file: no index, no entry
    (tmp_path / "features" / "enc" / ".x.npy.123.tmp").write_bytes(b"partial")
    assert set(FeatureCache(tmp_path, "enc").get(["a", "b"])) == {0}


def test_content_key_changes_when_pixels_change_even_with_size_and_mtime_kept(tmp_path):
    """`cp -p` / `rsync -a` replace a file's bytes and keep its size and modification time."""
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    render(a, "circle", "red")
    render(b, "circle", "blue")
    assert a.stat().st_size == b.stat().st_size  # same shape, same encoded size
    keys = ContentKeys(tmp_path / "cache")
    before = keys.keys([a])[0]
    st = a.stat()
    a.write_bytes(b.read_bytes())
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))  # what cp -p does
    assert a.stat().st_size == st.st_size and a.stat().st_mtime_ns == st.st_mtime_ns
    assert ContentKeys(tmp_path / "cache").keys([a])[0] != before  # a fresh process
    assert keys.keys([a])[0] != before  # and the same process


def test_unchanged_files_are_hashed_once_and_moved_files_keep_their_key(tmp_path):
    paths = [render(tmp_path / "data" / f"{c}.png", "circle", c) for c in ("red", "green")]
    first = ContentKeys(tmp_path / "cache")
    keys = first.keys(paths)
    assert first.hashed == 2
    again = ContentKeys(tmp_path / "cache")
    assert again.keys(paths) == keys and again.hashed == 0  # the stat signature matched: nothing read
    moved = tmp_path / "elsewhere"
    (tmp_path / "data").rename(moved)
    after = ContentKeys(tmp_path / "cache")
    assert after.keys([moved / "red.png", moved / "green.png"]) == keys and after.hashed == 2
    assert after.keys([tmp_path / "nothing.png"]) == [None]


def test_a_crop_of_a_file_is_another_image(tmp_path):
    from cirbench.protocol.images import ImageRef

    path = render(tmp_path / "a.png", "circle", "red")
    keys = ContentKeys(None).keys([path, ImageRef(path, (("crop", 0, 0, 8, 8),)), ImageRef(path)])
    assert keys[0] != keys[1] and keys[2] == keys[0]


def test_feature_store_encodes_once_then_hits(tmp_path, tiny_encoder):
    paths = [render(tmp_path / f"{c}.png", "circle", c) for c in ("red", "green", "blue")]
    store = FeatureStore(tiny_encoder, tmp_path / "cache", batch_size=2, workers=0)
    first, bad = store.features(paths)
    assert not bad and store.misses == 3 and store.hits == 0
    second, _ = FeatureStore(tiny_encoder, tmp_path / "cache", batch_size=2, workers=0).features(paths)
    assert np.allclose(first.numpy(), second.numpy())
    store2 = FeatureStore(tiny_encoder, tmp_path / "cache", batch_size=2, workers=0)
    render(paths[1], "square", "green")
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

    from cirbench.storage.features import TextFeatures

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


def test_fp32_run_after_fp16_run_never_reads_rounded_values(tmp_path, tiny_encoder):
    paths = [render(tmp_path / f"{c}.png", "circle", c) for c in ("red", "green")]
    half, _ = FeatureStore(tiny_encoder, tmp_path / "c", 2, 0, dtype="float16").features(paths)
    full_store = FeatureStore(tiny_encoder, tmp_path / "c", 2, 0, dtype="float32")
    full, _ = full_store.features(paths)
    assert full_store.misses == 2  # the fp16 rows were not served
    assert not np.array_equal(full.numpy(), half.numpy())
    assert np.array_equal(full.numpy().astype(np.float16), half.numpy())
    again = FeatureStore(tiny_encoder, tmp_path / "c", 2, 0, dtype="float16")
    same, _ = again.features(paths)
    assert again.hits == 2 and np.array_equal(same.numpy(), half.numpy())


@pytest.mark.parametrize("index", ["[]", "null", '{"keys": 5}', '{"keys": [1, 2], "shape": [2, 4], "sha256": "x"}'])
def test_an_index_of_the_wrong_shape_is_treated_as_corrupt(tmp_path, index):
    from typer.testing import CliRunner

    from cirbench.cli import app

    cache = FeatureCache(tmp_path, "enc")
    cache.put(["a"], np.ones((1, 4), dtype=np.float32))
    meta = next((tmp_path / "features" / "enc").glob("*.json"))
    meta.write_text(index)
    with pytest.warns(UserWarning, match="corrupt"):
        assert FeatureCache(tmp_path, "enc").get(["a"]) == {}
    FeatureCache(tmp_path, "enc").put(["a"], np.ones((1, 4), dtype=np.float32))  # rebuilt
    assert set(FeatureCache(tmp_path, "enc").get(["a"])) == {0}
    meta.write_text(index) if meta.exists() else None
    result = CliRunner().invoke(app, ["cache", "info", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0 and "features  enc" in result.output


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path):
    folder = tmp_path / "features" / "enc"
    folder.mkdir(parents=True)
    old, young = folder / ".abc.npy.123.tmp", folder / ".def.npy.456.tmp"
    old.write_bytes(b"partial")
    young.write_bytes(b"in progress")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    FeatureCache(tmp_path, "enc").put(["a"], np.ones((1, 4), dtype=np.float32))
    assert not old.exists() and young.exists()  # a young one may belong to a run in progress


class Interrupting:
    """Wraps an encoder and raises KeyboardInterrupt (as Ctrl-C would) after ``after`` batches."""

    def __init__(self, encoder, after):
        self.inner, self.after, self.calls = encoder, after, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_images(self, pixels):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.inner.encode_images(pixels)


def test_an_interrupted_encoding_keeps_what_it_encoded(tmp_path, tiny_encoder):
    paths = [render(tmp_path / f"{i}.png", "circle", c, offset=i)
             for i, c in enumerate(["red", "green", "blue", "yellow", "purple", "orange", "red"])]
    store = FeatureStore(Interrupting(tiny_encoder, after=2), tmp_path / "c", 2, 0, flush_every=4096,
                         flush_seconds=3600)
    with pytest.raises(KeyboardInterrupt):
        store.features(paths)
    resumed = FeatureStore(tiny_encoder, tmp_path / "c", 2, 0)
    resumed.features(paths)
    assert (resumed.hits, resumed.misses) == (4, 3)  # two batches of two were kept


def test_features_are_flushed_by_time_not_only_by_count(tmp_path, tiny_encoder):
    paths = [render(tmp_path / f"{c}.png", "circle", c) for c in ("red", "green", "blue", "yellow")]
    store = FeatureStore(tiny_encoder, tmp_path / "c", 1, 0, flush_every=4096, flush_seconds=0.0)
    store.features(paths)
    shards = list((tmp_path / "c" / "features" / tiny_encoder.key).glob("*.json"))
    assert len(shards) == 4  # one flush per batch when the interval has passed
