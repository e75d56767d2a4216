"""The second hostile re-check (issue 32): each case below ran code from a user's file, recorded a wrong
number as real, deleted or wrote outside the folders it was given, or ended in an internal error. Now
each gives the right number or one line (exit 2), and nothing outside the named folders changes.

Gallery of the flat-colour datasets (folder order): blue 0, gray 1, green 2, red 3, white 4, yellow 5.
"""

from __future__ import annotations

import json

import pytest
import torch

import colour_encoder
from cirbench.contracts.method import Method
from helpers import evaluate_colours, flat_dataset, invoke

colour_encoder.register()
G = "gallery/{}.png".format
QUERIES = [{"reference": G("red"), "text": "blue", "target": G("blue")},
           {"reference": G("green"), "text": "white", "target": G("white")},
           {"reference": G("yellow"), "text": "gray", "target": G("gray")}]


evaluate = evaluate_colours


# -- 1. a TorchScript archive given as weights is never loaded -----------------------------------------

class _Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, x):
        return x * self.w


def test_a_torchscript_weights_file_is_refused_without_loading_it(tmp_path, monkeypatch):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(_Scripted()), str(tmp_path / "weights.pt"))
    loaded = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: loaded.append(a))
    root = flat_dataset(tmp_path / "ds", QUERIES)
    code, out = invoke("run", "--dataset", root, "--encoder", f"RN50:{tmp_path / 'weights.pt'}", "-m", "image-only",
                       "--quiet", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 2 and loaded == []
    (line,) = [x for x in out.splitlines() if x.strip()]
    assert line.startswith(f"error: {tmp_path / 'weights.pt'}: a TorchScript archive, which cirbench never loads")
    assert not list((tmp_path / "r").rglob("*.json"))


# -- 2. finite outputs whose normalisation over- or underflows ---------------------------------------

def scaled(factor: float, where: str):
    class Scaled(Method):
        name = f"scaled-{where}"

        def encode_queries(self, batch):
            out = batch.reference_features.clone()
            return out * factor if where == "queries" else out

        def encode_gallery(self, gallery):
            out = gallery.features.clone()
            return out * factor if where == "gallery" else out

    return Scaled


@pytest.mark.parametrize("factor", [1e30, 1e-30])
@pytest.mark.parametrize("where,unit", [("queries", "query vectors of 3 of 3 queries"),
                                        ("gallery", "the gallery representation of 6 of 6 gallery items")])
def test_outputs_whose_length_overflows_fail_their_cell(tmp_path, factor, where, unit):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    ev = evaluate(root, [scaled(factor, where), "image-only"], tmp_path)
    assert {c.method: c.status for c in ev.cells} == {f"scaled-{where}": "failed", "image-only": "computed"}
    assert f"{unit} cannot be normalised in float32" in str(ev.failures[0].error)


def test_large_but_normalisable_outputs_rank_as_at_length_one(tmp_path):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    ev = evaluate(root, [scaled(1e15, "queries"), "image-only"], tmp_path)
    values = {c.method: c.record.metrics for c in ev.cells}
    assert values["scaled-queries"] == values["image-only"]


# -- 3. one gallery image listed twice -----------------------------------------------------------------

@pytest.mark.parametrize("second", ["gallery/./blue.png", "gallery/blue.png", "gallery/../gallery/blue.png"])
def test_a_gallery_listing_one_image_twice_is_refused_naming_both_lines(tmp_path, second):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    listing = ["gallery/blue.png", "gallery/gray.png", second, "gallery/white.png"]
    (root / "gallery.txt").write_text("\n".join(listing) + "\n")
    code, out = invoke("data", "check", root, "--quiet")
    assert code == 1  # a problem of the data: listed with the others
    assert (f"problem: ds:val: {root / 'gallery.txt'}:3: {second!r} is the image of {root / 'gallery.txt'}:1 "
            f"('gallery/blue.png') again ({root / 'gallery/blue.png'})") in out
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                       "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 2 and "is the image of" in out and not list((tmp_path / "r").rglob("*.json"))


def test_without_the_copy_the_same_gallery_runs(tmp_path):
    """A listing of each image once runs, in its own order."""
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "blue", "target": G("blue")},
                                          {"reference": G("red"), "text": "green", "target": G("green")}])
    (root / "gallery.txt").write_text("gallery/green.png\ngallery/blue.png\ngallery/white.png\n")
    (cell,) = evaluate(root, ["text-only"], tmp_path).cells
    assert cell.status == "computed" and cell.record.metrics["R@1"] == 100.0


@pytest.mark.parametrize("twice", ["same id", "same file"])
def test_the_engine_refuses_a_plugin_gallery_that_holds_an_image_twice(tmp_path, twice):
    from pathlib import Path

    from cirbench.contracts.split import Query, Split
    from cirbench.errors import DataError

    images = {"a": Path("x/a.png"), "b": Path("x/b.png"), "c": Path("x/../x/a.png")}
    gallery = ["a", "b", "a"] if twice == "same id" else ["a", "b", "c"]
    split = Split("mine", "test", Path("x"), images, gallery, [Query("0", "b", "t", ("a",))], {"recall": [1]},
                  ["R@1"])
    with pytest.raises(DataError) as err:
        split.validate()
    expected = "'a' is listed twice" if twice == "same id" else "'c' and 'a' are the same file (x/../x/a.png)"
    assert str(err.value).startswith(f"mine:test: gallery image {expected}; each copy would take a rank")


def test_fashioniq_ranks_a_repeated_name_once_and_says_so(tmp_path):
    import real_fixtures as F
    from cirbench.contracts.registry import datasets

    root = F.fashioniq(tmp_path / "fashioniq")
    listing = root / "image_splits" / "split.dress.val.json"
    # dress1 comes first but once; dress0 is the first name listed twice
    listing.write_text(json.dumps(["dress1", "dress0", "dress2", "dress0", "dress3", "dress2"]))
    with pytest.warns(UserWarning, match=r"split.dress.val.json: 2 repeated image name\(s\) \(first: 'dress0'\)"):
        split = datasets.get("fashioniq")(root).load("dress")
    assert split.gallery == ["dress1", "dress0", "dress2", "dress3"]


def test_cirr_names_two_names_of_one_file(tmp_path):
    import real_fixtures as F
    from cirbench.contracts.registry import datasets
    from cirbench.errors import DataError

    root = F.cirr(tmp_path / "cirr")
    listing = root / "cirr" / "image_splits" / "split.rc2.val.json"
    mapping = json.loads(listing.read_text())
    mapping["dev-9-9-img9"] = "./dev/../dev/dev-0-1-img0.png"
    listing.write_text(json.dumps(mapping))
    split = datasets.get("cirr")(root).load("val")
    with pytest.raises(DataError, match=r"cirr:val: gallery image 'dev-9-9-img9' and 'dev-0-1-img0' are the same file"):
        split.validate()


# -- 4. cache clear deletes only what cirbench wrote ---------------------------------------------------

def test_cache_clear_refuses_a_folder_that_is_not_a_cache_and_deletes_nothing(tmp_path):
    own = tmp_path / "mine"
    for name in ("features/notes.json", "features/x/data.npy", "text/a/b.json"):
        (own / name).parent.mkdir(parents=True, exist_ok=True)
        (own / name).write_text("mine")
    code, out = invoke("cache", "clear", "--cache-dir", own)
    assert code == 2 and out.strip() == f"error: {own} is not a cirbench cache (no CACHEDIR.TAG of cirbench's and " \
                                        "no feature folders it wrote); nothing was deleted"
    assert sorted(str(p.relative_to(own)) for p in own.rglob("*") if p.is_file()) == \
        ["features/notes.json", "features/x/data.npy", "text/a/b.json"]


def test_cache_clear_deletes_the_shards_and_keeps_a_users_files_beside_them(tmp_path):
    import numpy as np

    from cirbench.storage.cache import FeatureCache

    FeatureCache(tmp_path, "enc1").put(["a", "b"], np.ones((2, 4), dtype=np.float32))
    FeatureCache(tmp_path, "enc2").put(["c"], np.ones((1, 4), dtype=np.float32))
    (tmp_path / "features" / "enc1" / "mine.json").write_text("{}")
    (tmp_path / "features" / "enc1" / "mine.npy").write_bytes(b"0" * 2**20)
    (tmp_path / "features" / "other").mkdir()
    (tmp_path / "features" / "other" / "keep.txt").write_text("mine")
    code, out = invoke("cache", "clear", "--cache-dir", tmp_path, "--encoder-key", "nosuchkey")
    assert code == 2 and "no cached features under the encoder key 'nosuchkey'" in out and "keys there: enc1, enc2" in out
    code, out = invoke("cache", "clear", "--cache-dir", tmp_path)
    assert code == 0 and "removed 0.0 MiB of cached features" in out
    assert f"kept 2 file(s) cirbench did not write, e.g. {tmp_path / 'features/enc1/mine.json'}" in out
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    # enc1 keeps its marker beside the user's files; enc2 went whole; other/ was never cirbench's
    assert left == ["features/enc1/.cirbench-feature-cache", "features/enc1/mine.json", "features/enc1/mine.npy",
                    "features/other/keep.txt"]
    assert FeatureCache(tmp_path, "enc1").get(["a", "b"]) == {}


def test_a_cache_cirbench_made_is_tagged_and_cleared_even_when_empty(tmp_path):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    evaluate(root, ["image-only"], tmp_path)
    assert "cirbench" in (tmp_path / "cache" / "CACHEDIR.TAG").read_text()
    code, out = invoke("cache", "clear", "--cache-dir", tmp_path / "cache")
    assert code == 0 and not (tmp_path / "cache" / "features").exists()
    code, out = invoke("cache", "clear", "--cache-dir", tmp_path / "cache")
    assert code == 0 and "removed 0.0 MiB" in out


# -- 6. plugins that exit, fail half-way, take a built-in's name as an alias, or register nothing ---------

@pytest.fixture(autouse=True)
def registries_as_they_were():
    """Whatever a test's plugins register is gone after it (a later `--method all` must not see it)."""
    from cirbench.contracts import plugins

    for r in plugins.REGISTRIES:
        r.names()
    saved = [r.snapshot() for r in plugins.REGISTRIES]
    loaded, broken = dict(plugins.loaded), dict(plugins.broken)
    yield
    for r, state in zip(plugins.REGISTRIES, saved):
        r.restore(state)
    plugins.loaded.clear(), plugins.loaded.update(loaded)
    plugins.broken.clear(), plugins.broken.update(broken)


def plugin_file(tmp_path, name: str, body: str):
    path = tmp_path / f"{name}.py"
    path.write_text("from cirbench import Method, register_method\n\n" + body)
    return path


def test_a_plugin_that_calls_sys_exit_is_broken_not_the_end_of_the_run(tmp_path):
    path = plugin_file(tmp_path, "quits", "import sys\nsys.exit(0)\n")
    root = flat_dataset(tmp_path / "ds", QUERIES)
    code, out = invoke("run", "--plugin", path, "--dataset", root, "--encoder", "colour-test", "-m", "image-only",
                       "--quiet", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 2 and f"plugin {path} does not load: it called sys.exit(0) while being imported" in out
    code, out = invoke("list", "methods", "--plugin", path)
    assert code == 0 and "image-only" in out and f"plugin {path}  BROKEN: it called sys.exit(0)" in out


def test_a_plugin_that_fails_half_way_leaves_nothing_registered(tmp_path):
    from cirbench.contracts import plugins
    from cirbench.contracts.registry import methods

    path = plugin_file(tmp_path, "halfway", "@register_method('halfway-first')\nclass First(Method):\n    pass\n\n\n"
                                            "raise RuntimeError('the second half is broken')\n")
    plugins.load([path], strict=False)
    assert "halfway-first" not in methods and "the second half is broken" in plugins.broken[str(path)]
    code, out = invoke("run", "--plugin", path, "-m", "halfway-first", "--dataset", flat_dataset(tmp_path / "ds", QUERIES),
                       "--encoder", "colour-test", "--quiet", "--results-dir", tmp_path / "r")
    assert code == 2 and "does not load: RuntimeError: the second half is broken" in out


def test_an_alias_that_is_a_built_in_name_is_refused(tmp_path):
    from cirbench.contracts import plugins
    from cirbench.contracts.registry import methods

    path = plugin_file(tmp_path, "shadow", "@register_method('shadow', aliases=('image-only',))\n"
                                           "class Shadow(Method):\n    pass\n")
    plugins.load([path], strict=False)
    assert "alias 'image-only'" in plugins.broken[str(path)] and "is the name of the method registered by" in \
        plugins.broken[str(path)]
    assert "shadow" not in methods and methods.get("image-only").__name__ != "Shadow"


def test_a_plugin_that_registers_nothing_says_so_and_a_second_load_runs_it_once(tmp_path):
    from cirbench.contracts import plugins
    from cirbench.contracts.registry import methods

    log = tmp_path / "imports.log"
    quiet = plugin_file(tmp_path, "quiet", f"open({str(log)!r}, 'a').write('imported\\n')\n")
    with pytest.warns(UserWarning, match=f"plugin {quiet} registered no method, dataset or encoder"):
        plugins.load([quiet])
    counted = plugin_file(tmp_path, "counted", f"open({str(log)!r}, 'a').write('counted\\n')\n\n\n"
                                              "@register_method('counted')\nclass Counted(Method):\n    pass\n")
    plugins.load([counted])
    plugins.load([counted])
    assert log.read_text().splitlines() == ["imported", "counted"] and "counted" in methods
    assert str(counted) not in plugins.broken


def test_entry_point_plugins_can_be_left_out_of_a_run(tmp_path, monkeypatch):
    """CIRBENCH_ENTRY_POINTS=0: what is installed beside cirbench does not join `--method all` (the suite
    runs so, except the tests of entry points themselves)."""
    from cirbench.contracts import registry

    site = tmp_path / "site"
    (site / "installed_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "installed_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: installed-plugin\nVersion: 0.1\n")
    (site / "installed_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[cirbench.methods]\ninstalled = installed_plugin:Installed\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("CIRBENCH_ENTRY_POINTS", "1")
    assert "installed" in [ep.name for ep in registry.entry_points("cirbench.methods")]
    monkeypatch.setenv("CIRBENCH_ENTRY_POINTS", "0")
    assert list(registry.entry_points("cirbench.methods")) == []


def test_built_in_methods_are_named_by_their_registered_names_in_messages_and_records(tmp_path):
    """Each built-in class (ImageText, WeiCom) runs, fails and is recorded under its registered name."""
    root = flat_dataset(tmp_path / "ds", [{"reference": G("red"), "text": "blue", "target": G("blue")}])
    (root / "gallery.txt").write_text("gallery/blue.png\n")
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "image+text,weicom", "--workers", 0,
                       "--json", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 1
    errors = [x for x in out.splitlines() if x.startswith("error:")]
    assert errors == ["error: weicom on ds:val: WeiCom standardises each similarity over the gallery, and a gallery "
                      "of one image has no spread (--option weicom.normalize=false scores it without)"]
    cells = json.JSONDecoder().raw_decode(out[out.index("{"):])[0]["cells"]
    assert {c["method"]: c["status"] for c in cells} == {"image+text": "computed", "weicom": "failed"}
    assert [p.name for p in (tmp_path / "r").rglob("*.json")] == ["image+text.json"]


# -- 7. a result edited by hand, an outcomes file changed or gone -----------------------------------------

@pytest.fixture
def two_methods(tmp_path):
    root = flat_dataset(tmp_path / "alpha", QUERIES)
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only,text-only", "--workers",
                       0, "--quiet", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 0, out
    return tmp_path / "r"


def report_of(results_dir, out):
    code, said = invoke("report", "--results-dir", results_dir, "--out", out, "--no-grids", "--no-html")
    assert code == 0, said
    tables, _, unread = (out / "results.md").read_text().partition("## Result files not read")
    return said, tables


def test_a_metric_edited_by_hand_is_in_no_table(two_methods, tmp_path):
    path = next(two_methods.rglob("text-only.json"))
    record = json.loads(path.read_text())
    honest = record["metrics"]["R@1"]
    record["metrics"]["R@1"] = 99.0
    path.write_text(json.dumps(record))
    said, md = report_of(two_methods, tmp_path / "o")
    assert f"warning: skipped {path}, left out of every table:" in said and "values give" in said
    assert "99.00" not in md and "text-only" not in md and "image-only" in md
    code, out = invoke("compare", "image-only", "text-only", "--results-dir", two_methods, "--json")
    assert "text-only.json, left out of every table" in out
    record["metrics"]["R@1"] = honest  # put back: the result is in the tables again
    path.write_text(json.dumps(record))
    assert "text-only" in report_of(two_methods, tmp_path / "o2")[1]


def test_an_outcomes_file_changed_or_gone_is_named(two_methods, tmp_path):
    path = next(two_methods.rglob("text-only.json"))
    npz = path.with_name("text-only.outcomes.npz")
    npz.write_bytes(npz.read_bytes() + b"\0")
    said, md = report_of(two_methods, tmp_path / "o")
    assert f"warning: skipped {path}, left out of every table: {npz}: changed after its result was written" in said
    assert "older result file(s)" not in md and "text-only" not in md
    npz.unlink()
    said, _ = report_of(two_methods, tmp_path / "o2")
    assert f"{npz}: the per-query outcomes its result {path} names are missing" in said


# -- 8. one line, exit 2, where there was an internal error or a silent acceptance -------------------------

@pytest.mark.parametrize("value,code", [("5", 2), ("-3", 2), ("1.0001", 2), ("0", 0), ("1", 0)])
def test_weicoms_lambda_is_bounded_as_declared(tmp_path, value, code):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    got, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "weicom", "-o", f"weicom.lam={value}",
                      "--quiet", "--workers", 0, "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert got == code, out
    if code:
        assert out.strip() == f"error: option weicom.lam='{value}' must lie between 0 and 1"


def test_sigterm_ends_a_run_with_its_line_and_exit_130(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    ready = tmp_path / "ready"
    plugin = plugin_file(tmp_path, "sleeper", "import pathlib, time\n\n\n@register_method('sleeper')\n"
                                              "class Sleeper(Method):\n    def encode_queries(self, batch):\n"
                                              f"        pathlib.Path({str(ready)!r}).write_text('x')\n"
                                              "        time.sleep(60)\n")
    root = flat_dataset(tmp_path / "ds", QUERIES)
    proc = subprocess.Popen([sys.executable, "-m", "cirbench", "run", "--plugin", str(plugin), "-m", "sleeper",
                             "--dataset", str(root), "--encoder", "random:RN50", "--workers", "0", "--quiet",
                             "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if ready.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "interrupted: what was encoded so far is in the cache; run again to continue"


def _magiclens_file(path, params):
    import pickle

    import msgpack

    path.write_bytes(pickle.dumps(msgpack.packb({"params": params}, use_bin_type=True)))
    return path


def _array(shape, fields=None):
    import msgpack
    import numpy as np

    a = np.zeros(shape, dtype=np.float32)
    return msgpack.ExtType(1, msgpack.packb(fields if fields is not None else [list(a.shape), "float32", a.tobytes()]))


@pytest.mark.parametrize("case,message", [
    ("no shape", "an array is msgpack of (shape, dtype, bytes), found"),
    ("chunks without shape", "a chunked array of the file is malformed (KeyError: 'shape')"),
    ("a list leaf", "params/clip/visual/conv1/kernel is list, not an array of numbers"),
    ("a flat conv", "not a MagicLens checkpoint (IndexError"),
])
def test_magiclens_files_of_the_wrong_arrays_are_one_line(tmp_path, case, message):
    import numpy as np

    conv = {"no shape": _array((2,), fields=["float32", np.zeros(2, np.float32).tobytes()]),
            "chunks without shape": {"__msgpack_chunked_array__": True, "chunks": {"0": _array((2,))}},
            "a list leaf": [1.0, 2.0], "a flat conv": _array((4,))}[case]
    params = {"clip": {"visual": {"conv1": {"kernel": conv}, "positional_embedding": _array((5, 4))},
                       "text": {}}, "multimodal_encoder": {},
              "contrastive_multimodal_pooler": {"pool_attn": {"query": {"w": _array((4, 2, 2))}}}}
    path = _magiclens_file(tmp_path / "odd.pkl", params)
    root = flat_dataset(tmp_path / "ds", QUERIES)
    code, out = invoke("run", "--dataset", root, "--encoder", f"magiclens:{path}", "-m", "image-only", "--quiet",
                       "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 2 and "internal error" not in out
    (line,) = out.strip().splitlines()
    assert line.startswith(f"error: {path}: ") and message in line


def test_a_full_disk_under_the_cache_is_one_line_naming_the_path_and_the_space(tmp_path, monkeypatch):
    import errno

    import numpy as np

    def no_space(fh, array, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", no_space)
    root = flat_dataset(tmp_path / "ds", QUERIES)
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                       "--workers", 0, "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 2, out
    (line,) = out.strip().splitlines()
    assert line.startswith(f"error: cannot write {tmp_path / 'c' / 'features'}/")
    assert "no space left on the device (needs about 0.0 MiB, " in line and " MiB free); free some space" in line


# -- 9. the defaults of the official codes ----------------------------------------------------------------

def test_features_are_stored_and_scored_in_fp32_by_default_and_recorded(tmp_path):
    import numpy as np

    root = flat_dataset(tmp_path / "ds", QUERIES)
    (cell,) = evaluate(root, ["image-only"], tmp_path).cells
    assert cell.record.run.feature_dtype == "float32"
    shards = list((tmp_path / "cache" / "features").rglob("*.npy"))
    assert shards and {str(np.load(p).dtype) for p in shards} == {"float32"}
    (half,) = evaluate(root, ["image-only"], tmp_path, feature_dtype="fp16", overwrite=True).cells
    assert half.record.run.feature_dtype == "float16"


def test_hf_clip_rescales_in_float64_as_transformers_does():
    """Every byte value: the float32 product (x * float32(1/255)) differs from transformers' rescale
    (float64 product, cast) by one ulp on 126 of the 256 values."""
    import numpy as np
    from PIL import Image
    from transformers.image_transforms import rescale

    from cirbench.protocol.transforms import Rescale

    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)[..., None].repeat(3, axis=2)
    want = rescale(pixels, 1 / 255, data_format="channels_last", dtype=np.float32)
    got = Rescale(1 / 255)(Image.fromarray(pixels)).permute(1, 2, 0).numpy()
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_the_hf_clip_encoder_squashes_cocos_query_crops(tmp_path):
    """BGE-VL's encoder honours COCO's squash like open_clip's and MagicLens's: both bands of a 40 x 20
    crop survive (its centre crop would cut the red one), the RGB conversion and the float64 rescale stay."""
    import numpy as np
    from PIL import Image

    from cirbench.contracts.encoder import load_encoder
    from cirbench.protocol.images import ImageRef, load_rgb
    from cirbench.protocol.transforms import Rescale, ToRGB
    from hf_models import tiny_hf_clip

    encoder = load_encoder(f"hf-clip:{tiny_hf_clip(tmp_path / 'clip')}")
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, :10] = (255, 0, 0)
    image[:, 30:] = (0, 0, 255)
    Image.fromarray(image).save(tmp_path / "m.png")
    ref = ImageRef(tmp_path / "m.png", (("crop", 0, 0, 40, 20), ("squash",)))
    squash = encoder.squash_preprocess
    n = encoder.preprocess(load_rgb(ref)).shape[-1]
    pixels = squash(load_rgb(ref))
    assert pixels.shape[-2:] == (n, n)
    assert pixels[0, n // 2, 1] > 0.5 and pixels[2, n // 2, -2] > 0.5
    assert encoder.preprocess(load_rgb(ref))[0, n // 2, 1] < 0  # the centre crop loses the red band
    kinds = [type(t) for t in squash.transforms]
    assert kinds[0] is ToRGB and Rescale in kinds
    assert encoder.identity["squash_preprocess"].startswith("Compose(     ToRGB()     Resize(size=(")


def test_bge_vls_released_models_run_at_their_pinned_commits():
    from cirbench.contracts.registry import methods

    base, large = methods.get("bge-vl"), methods.get("bge-vl-large")
    assert base.own_encoder({}, None) == "hf-clip:BAAI/BGE-VL-base@cc4c733ed997dbee4ac70ccffb911e70c9c24b93"
    assert large.own_encoder({}, None) == "hf-clip:BAAI/BGE-VL-large@40fb48217f521df22a2a5bf15edd52ed1146ef05"
    assert base.own_encoder({"model": "BAAI/BGE-VL-large"}, None).endswith("@40fb48217f521df22a2a5bf15edd52ed1146ef05")
    assert base.own_encoder({"revision": "main"}, None) == "hf-clip:BAAI/BGE-VL-base@main"
    assert base.own_encoder({"model": "/models/mine"}, None) == "hf-clip:/models/mine"
    # the model and its revision are in the encoder's identity and row, not in the method's setting
    from cirbench.contracts.method import setting_of

    assert setting_of(base.options, {"model": "/models/mine", "revision": "abc", "template": None}) == ""


@pytest.mark.parametrize("order,bge,magiclens", [(None, "{c1}, and {c2}", "{c1} and {c2}"),
                                                 ("natural", "{c1}, and {c2}", "{c1} and {c2}"),
                                                 ("official", "{c2}, and {c1}", "{c2} and {c1}")])
def test_bge_vl_and_magiclens_follow_a_forced_caption_order(order, bge, magiclens):
    from types import SimpleNamespace

    from cirbench.contracts.registry import methods

    split = SimpleNamespace(dataset="fashioniq", caption_order=order, prompts={"caption": "{c1} and {c2}"})
    for name, want in (("bge-vl", bge), ("magiclens", magiclens)):
        method = methods.get(name).__new__(methods.get(name))
        method.option = lambda key: None
        method.prepare(split)
        assert method.template == want
        assert ("caption order forced" in method.source) == (order is not None)


def test_magiclens_base_published_numbers_are_in_the_paper_table():
    from cirbench.analysis.tables import paper_numbers

    paper = paper_numbers()
    base = paper[(paper.method == "magiclens") & (paper.backbone == "magiclens-base")]
    got = {(r.dataset, r.split, r.metric): r.value for r in base.itertuples() if r.dataset != "circo"}
    assert got == {("cirr", "test1", "R@1"): 27.0, ("cirr", "test1", "Rs@1"): 66.7,
                   ("fashioniq", "average", "R@10"): 26.3, ("genecis", "average", "R@1"): 15.0}


# -- 10. each length check of the outcomes, on its own ---------------------------------------------------

def _cut_qids(o):
    o.qids = o.qids[:2]


def _cut_texts(o):
    o.texts = o.texts[:2]


def _cut_ranking(o):
    top, ranks, first = o.views["gallery"]
    o.views["gallery"] = (top[:2], ranks, first)


def _cut_values(o):
    values, agg = o.values["R@1"]
    o.values["R@1"] = (values[:2], agg)


def _cut_ranks(o):
    top, ranks, first = o.views["gallery"]
    o.views["gallery"] = (top, ranks[:2], first)


@pytest.mark.parametrize("cut,problem", [
    (_cut_qids, "2 query ids for 3 queries"),
    (_cut_texts, "2 texts for 3 queries"),
    (_cut_ranking, "the gallery ranking has 2 rows, 3 first ranks and 3 rank lists for 3 queries"),
    (_cut_ranks, "the gallery ranking has 3 rows, 3 first ranks and 2 rank lists for 3 queries"),
    (_cut_values, "2 values of R@1 for 3 queries"),
])
def test_each_outcomes_length_check_names_what_is_short(two_methods, cut, problem):
    from cirbench.errors import DataError
    from cirbench.storage import results

    path = next(two_methods.rglob("text-only.json"))
    record = results.read(path)
    outcomes = results.load_outcomes(record)
    results.check_outcomes(outcomes, record, path)  # whole, it fits
    cut(outcomes)
    with pytest.raises(DataError) as err:
        results.check_outcomes(outcomes, record, path)
    assert str(err.value).startswith(f"{path}: per-query outcomes do not fit their result ({problem}")
