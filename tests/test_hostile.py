"""No silent wrong number from a bad method or a bad file (issue 18): every case below gave a number, an
empty table or an internal error before; now it fails its cell (the rest of the run completes) or stops
with one line naming the file and what is wrong.

Gallery of the flat-colour datasets (folder order): blue 0, gray 1, green 2, red 3, white 4, yellow 5.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import cirbench
import colour_encoder
from cirbench.errors import DataError, UsageError
from cirbench.contracts.method import Method
from helpers import evaluate_colours, flat_dataset, folder_dataset, invoke

colour_encoder.register()
G = "gallery/{}.png".format
QUERIES = [{"reference": G("red"), "text": "blue", "target": G("blue")},
           {"reference": G("green"), "text": "white", "target": G("white")}]


evaluate = evaluate_colours


# -- 1. non-finite and zero outputs ------------------------------------------------------------------

def broken(kind: str, hook: str = "vectors"):
    """A plugin whose output has NaN, inf or zero rows (one of the two queries, or all)."""

    class Broken(Method):
        name = f"broken-{kind}-{hook}"
        scoring = "scores" if hook == "scores" else "vectors"
        rerank_depth = 3 if hook == "rerank" else 0

        def encode_queries(self, batch):
            out = batch.reference_features.clone()
            if hook == "vectors":
                out[0] = {"nan": float("nan"), "inf": float("inf"), "zero": 0.0}[kind]
            return out

        def score(self, batch, gallery):
            s = batch.reference_features @ gallery.features.T
            s[:, 1] = float("nan") if kind == "nan" else float("-inf")
            return s

        def rerank(self, batch, candidates, scores):
            return torch.full_like(scores, float("nan"))

    return Broken


@pytest.mark.parametrize("kind,hook,expected", [
    ("nan", "vectors", "query vectors of 1 of 2 queries are not finite"),
    ("inf", "vectors", "query vectors of 1 of 2 queries are not finite"),
    ("zero", "vectors", "query vectors of 1 of 2 queries are zero vectors"),
    ("nan", "scores", "scores of 2 of 2 queries are not finite"),
    ("inf", "scores", "scores of 2 of 2 queries are not finite"),
    ("nan", "rerank", "re-ranking scores of 2 of 2 queries are not finite"),
])
def test_non_finite_or_zero_output_fails_its_cell_and_the_rest_completes(tmp_path, kind, hook, expected):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    ev = evaluate(root, [broken(kind, hook), "image-only"], tmp_path)
    status = {c.method: c.status for c in ev.cells}
    assert status == {f"broken-{kind}-{hook}": "failed", "image-only": "computed"}
    assert expected in str(ev.failures[0].error)


def test_a_method_whose_zero_vector_means_something_says_so(tmp_path):
    class Abstains(broken("zero")):
        name = "abstains"
        zero_vectors_meaningful = True

    root = flat_dataset(tmp_path / "ds", QUERIES)
    (cell,) = evaluate(root, [Abstains], tmp_path).cells
    assert cell.status == "computed"


def test_the_cli_names_the_method_the_split_and_the_count(tmp_path, monkeypatch):
    from cirbench.contracts.registry import methods

    class AllNan(Method):
        registry_name = "all-nan"

        def encode_queries(self, batch):
            return torch.full_like(batch.reference_features, float("nan"))

    methods.names()  # load the built-ins first, then add the plugin for this test only
    monkeypatch.setitem(methods._items, "all-nan", AllNan)
    root = flat_dataset(tmp_path / "ds", QUERIES)
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "all-nan,image-only", "--workers",
                       0, "--quiet", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    line = [x for x in out.splitlines() if x.startswith("error:")]
    assert code == 1 and len(line) == 1
    assert line[0].startswith("error: all-nan on ds:val: query vectors of 2 of 2 queries are not finite")
    assert len(list((tmp_path / "r").rglob("image-only.json"))) == 1  # the other cell was written


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_option_values_are_refused(tmp_path, value):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "weicom", "-o",
                       f"weicom.lam={value}", "--quiet", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 2 and f"option weicom.lam='{value}' must be a finite number" in out


# -- 2, 3, 9. compare and report read only what they should -------------------------------------------

@pytest.fixture
def two_datasets(tmp_path):
    for name in ("alpha", "beta"):
        root = flat_dataset(tmp_path / name, QUERIES)
        code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only,text-only",
                           "--workers", 0, "--quiet", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
        assert code == 0, out
    return tmp_path / "r"


def test_compare_dataset_filters_and_an_unknown_name_is_refused(two_datasets):
    code, out = invoke("compare", "image-only", "text-only", "--dataset", "alpha", "--results-dir", two_datasets,
                       "--json")
    assert code == 0, out
    assert {row["dataset"] for row in json.loads(out)} == {"alpha"}
    code, out = invoke("compare", "image-only", "text-only", "--dataset", "gamma", "--results-dir", two_datasets)
    assert code == 2 and "--dataset 'gamma': no result files of that dataset" in out and "alpha, beta" in out
    code, out = invoke("compare", "image-only", "text-only", "--dataset", "alpha:test", "--results-dir", two_datasets)
    assert code == 2 and "alpha has no split 'test'" in out


def test_fewer_than_100_resamples_are_refused_for_p_values(two_datasets, tmp_path):
    code, out = invoke("compare", "image-only", "text-only", "--bootstrap", 1, "--results-dir", two_datasets)
    assert code == 2 and "needs at least 100 resamples" in out
    code, out = invoke("report", "--bootstrap", 5, "--results-dir", two_datasets, "--out", tmp_path / "o")
    assert code == 2 and "at least 100 resamples" in out


def tamper_outcomes(results_dir, dataset: str, method: str, change) -> None:
    """Rewrite one cell's outcomes file and update the checksum its result records (a consistent-looking
    but wrong file)."""
    from cirbench.util import fsutil

    path = next(p for p in results_dir.rglob(f"{method}.json") if f"/{dataset}-" in str(p))
    npz = path.with_name(f"{method}.outcomes.npz")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(npz, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    record = json.loads(path.read_text())
    record["outcomes"]["sha256"] = fsutil.sha256_file(npz)
    path.write_text(json.dumps(record))


def test_an_outcomes_file_that_does_not_fit_its_result_is_skipped_everywhere(two_datasets, tmp_path):
    def drop_a_row(arrays):  # one query's values gone: its rows disagree in length
        arrays["metric_values"] = arrays["metric_values"][:1]

    tamper_outcomes(two_datasets, "alpha", "text-only", drop_a_row)
    code, out = invoke("compare", "image-only", "text-only", "--results-dir", two_datasets, "--json")
    assert code == 0
    rows = json.loads(out[out.index("["):])
    assert {r["dataset"] for r in rows} == {"beta"}  # alpha's pair has no usable outcomes
    assert "warning:" in out and "text-only.outcomes.npz: per-query outcomes do not fit their result" in out
    code, out = invoke("report", "--results-dir", two_datasets, "--out", tmp_path / "o", "--no-grids", "--no-html")
    assert code == 0, out
    assert "per-query outcomes do not fit their result" in out
    assert "alpha" in (tmp_path / "o" / "results.md").read_text()


def test_per_query_values_that_contradict_the_result_are_refused(two_datasets):
    from cirbench.storage import results

    def flip(arrays):  # same length, other values: the table and the interval would disagree
        arrays["metric_values"] = 1.0 - arrays["metric_values"]

    tamper_outcomes(two_datasets, "alpha", "image-only", flip)
    path = next(p for p in two_datasets.rglob("image-only.json") if "/alpha-" in str(p))
    with pytest.raises(DataError, match="values give"):
        results.load_outcomes(results.read(path))


def test_the_report_survives_an_interval_that_excludes_its_value(tmp_path):
    """A percentile interval need not contain the point value (a skewed metric): the plot's error bar
    is clipped rather than the whole report lost (matplotlib refuses negative yerr)."""
    import pandas as pd

    from cirbench.analysis.tables import Table, _plot

    index = pd.MultiIndex.from_tuples([("enc", "m")])
    columns = pd.MultiIndex.from_tuples([("s", "R@1")])
    frame = lambda v: pd.DataFrame([[v]], index=index, columns=columns)  # noqa: E731
    path = _plot("d", Table(frame(10.0), frame(12.0), frame(15.0), ["s"]), tmp_path)
    assert path.is_file()


# -- 4, 10. feature cache indexes ------------------------------------------------------------------

def test_a_shard_index_whose_keys_were_permuted_is_not_served(tmp_path):
    from cirbench.storage.cache import FeatureCache

    cache = FeatureCache(tmp_path, "enc")
    cache.put(["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]]))
    (meta,) = (tmp_path / "features" / "enc").glob("*.json")
    index = json.loads(meta.read_text())
    index["keys"] = ["b", "a"]  # the rows' file and its checksum untouched
    meta.write_text(json.dumps(index))
    with pytest.warns(UserWarning, match="corrupt"):
        assert FeatureCache(tmp_path, "enc").get(["a", "b"]) == {}


def test_a_shard_index_with_more_keys_than_rows_is_dropped(tmp_path):
    from cirbench.storage.cache import FeatureCache, shard_name

    cache = FeatureCache(tmp_path, "enc")
    cache.put(["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]]))
    (meta,) = (tmp_path / "features" / "enc").glob("*.json")
    index = json.loads(meta.read_text())
    index["keys"] = ["a", "b", "c"]
    new = meta.with_name(shard_name(index["keys"], "float32") + ".json")
    meta.rename(new)
    meta.with_suffix(".npy").rename(new.with_suffix(".npy"))
    new.write_text(json.dumps(index))
    with pytest.warns(UserWarning, match="corrupt"):
        assert FeatureCache(tmp_path, "enc").get(["c"]) == {}


def test_deeply_nested_json_is_one_line(tmp_path):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    (root / "val.jsonl").write_text('{"reference": ' + "[" * 100000 + "]" * 100000 + "}\n")
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                       "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 2 and "val.jsonl:1: JSON nested too deeply to read" in out and "Traceback" not in out


# -- 5, 8. annotation files ------------------------------------------------------------------------

@pytest.mark.parametrize("row", [{"reference": G("gray"), "text": "blue"},
                                 {"reference": G("gray"), "text": "blue", "targets": []}])
def test_a_query_without_a_target_is_named_by_run_and_data_check(tmp_path, row):
    root = flat_dataset(tmp_path / "ds", [*QUERIES, row])
    for args in (("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                  "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c"),
                 ("data", "check", root)):
        code, out = invoke(*args)
        assert code == (1 if args[0] == "data" else 2), out  # data check: 1 when it finds problems
        assert "val.jsonl:3: this query has no target" in out and "2 other queries" in out


def test_a_test_split_without_any_targets_runs(tmp_path):
    root = flat_dataset(tmp_path / "ds", [{k: v for k, v in q.items() if k != "target"} for q in QUERIES])
    (cell,) = evaluate(root, ["image-only"], tmp_path).cells
    assert cell.status == "computed" and cell.record.metrics == {} and not cell.record.dataset.has_ground_truth


def test_non_utf8_bytes_in_an_annotation_file_are_one_line(tmp_path):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    data = (root / "val.jsonl").read_bytes()
    (root / "val.jsonl").write_bytes(data + b'{"reference": "gallery/red.png", "text": "caf\xe9", "target": "x"}\n')
    for args in (("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                  "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c"), ("data", "check", root)):
        code, out = invoke(*args)
        assert code == (1 if args[0] == "data" else 2), out
        assert "val.jsonl:3: not UTF-8 text (byte 0xe9" in out and "internal error" not in out


def test_duplicate_query_ids_are_named(tmp_path):
    root = flat_dataset(tmp_path / "ds", [{**QUERIES[0], "id": "q1"}, {**QUERIES[1], "id": "q1"}])
    code, out = invoke("data", "check", root)
    assert code == 1 and "val.jsonl:2: query id 'q1' is already used on line 1" in out


def test_a_plugin_dataset_with_duplicate_query_ids_is_refused_by_the_engine(tmp_path):
    from cirbench.contracts.split import Query, Split
    from cirbench.errors import DataError

    split = Split(dataset="plug", split="val", root=tmp_path, images={"a": tmp_path / "a.png"}, gallery=["a"],
                  queries=[Query("1", "a", "x", ("a",)), Query("1", "a", "y", ("a",))],
                  metrics={"recall": [1]}, main_metrics=["R@1"])
    with pytest.raises(DataError, match="plug:val: query id '1' is used by 2 queries"):
        split.validate()


def test_queries_carrying_released_fields_partly_name_the_first_without(tmp_path):
    root = flat_dataset(tmp_path / "ds", [{**QUERIES[0], "gpt-3.5-turbo": "a blue one"}, QUERIES[1]])
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "--transform", "clip", "-m", "cirevl",
                       "--quiet", "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 2 and "carry 'gpt-3.5-turbo' for some queries only (query '2' is the first without it)" in out


def test_a_10kb_caption_is_not_echoed_whole(tmp_path, tiny_dir):
    long = "word " * 2000
    root = flat_dataset(tmp_path / "ds", [{**QUERIES[0], "text": long}])
    from test_checkpoints import pic2word_ckpt

    pic2word_ckpt(tmp_path / "p.pt", 32, 64)
    code, out = invoke("run", "--dataset", root, "--encoder", f"local-dir:{tiny_dir}", "-m", "pic2word",
                       "--checkpoint", tmp_path / "p.pt", "--prompt", "pseudo={text} , a photo of *", "--quiet",
                       "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")
    line = [x for x in out.splitlines() if x.startswith("error:")][0]
    assert code == 2 and "does not hold the pseudo-word" in line and len(line) < 600 and "characters)" in line


def test_genecis_boxes_and_ids_are_checked(tmp_path):
    import real_fixtures as F
    from cirbench.api import open_dataset

    root = F.genecis(tmp_path / "genecis")
    path = root / "annotations" / "focus_attribute.json"
    rows = json.loads(path.read_text())
    for bad, message in (([5, 5, float("nan"), 8], "finite numbers"), ([5, 5, 0, 8], "positive width"),
                         ([5, True, 10, 8], "finite numbers")):
        rows[0]["reference"]["instance_bbox"] = bad
        path.write_text(json.dumps(rows))
        dataset, _ = open_dataset("genecis:focus_attribute", overrides={"genecis": root}, cache_dir=tmp_path / "c")
        with pytest.raises(DataError, match=message):
            dataset.load("focus_attribute")
    rows = json.loads(path.read_text())
    rows[0]["reference"]["instance_bbox"] = [500, 500, 10, 8]  # beyond the 40 x 30 image
    path.write_text(json.dumps(rows))
    code, out = invoke("run", "--dataset", "genecis:focus_attribute", "--data", f"genecis={root}", "--encoder",
                       "colour-test", "--transform", "clip", "-m", "image-only", "--quiet", "--results-dir",
                       tmp_path / "r", "--cache-dir", tmp_path / "c")
    assert code == 2 and "the box [500, 500, 10, 8] lies outside the 40 x 30 image" in out
    obj = root / "annotations" / "focus_object.json"
    rows = json.loads(obj.read_text())
    rows[0]["reference"]["val_image_id"] = True
    obj.write_text(json.dumps(rows))
    dataset, _ = open_dataset("genecis:focus_object", overrides={"genecis": root}, cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="val_image_id"):
        dataset.load("focus_object")


# -- 6. killed runs lose little ---------------------------------------------------------------------

def test_features_reach_the_disk_every_ten_seconds_by_default(tmp_path, tiny_encoder, monkeypatch):
    """A batch takes 4 s on this fake clock: with the default interval, a flush follows the batches at 12,
    24 and 36 s (and the end): a SIGKILL loses at most 10 s plus one batch, not a minute."""
    import cirbench.features as features
    from helpers import render

    clock = {"t": 0.0}
    encode = type(tiny_encoder).encode_images

    def slow_encode(self, pixels):
        clock["t"] += 4.0
        return encode(self, pixels)

    monkeypatch.setattr(type(tiny_encoder), "encode_images", slow_encode)
    monkeypatch.setattr(features.time, "monotonic", lambda: clock["t"])
    paths = [render(tmp_path / f"{i}.png", "circle", "red", offset=i) for i in range(10)]
    store = features.FeatureStore(tiny_encoder, tmp_path / "c", 1, 0)
    store.features(paths)
    shards = list((tmp_path / "c" / "features" / tiny_encoder.key).glob("*.json"))
    assert sorted(len(json.loads(p.read_text())["keys"]) for p in shards) == [1, 3, 3, 3]


# -- 7. unwritable places found before work ----------------------------------------------------------

def test_an_unwritable_cell_folder_stops_the_run_before_any_encoding(tmp_path, monkeypatch):
    """A file where a cell's folder must go (the same refusal root gets nowhere else): the run stops with
    one line naming it before a single image is encoded."""
    import cirbench.features as features

    root = flat_dataset(tmp_path / "ds", QUERIES)
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                       "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")  # learn the cell's place
    assert code == 0, out
    cell = next((tmp_path / "r").rglob("image-only.json")).parent
    for p in cell.iterdir():
        p.unlink()
    cell.rmdir()
    cell.write_text("not a folder")
    encoded = []
    monkeypatch.setattr(features.FeatureStore, "_encode", lambda self, *a, **k: encoded.append(1) or [])
    code, out = invoke("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only", "--quiet",
                       "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c2")
    assert code == 2 and f"cannot write the result folder {cell}" in out
    assert encoded == []


# -- smaller ------------------------------------------------------------------------------------------

def test_unknown_prompt_kinds_and_repeated_options_are_refused(tmp_path):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    common = ("--dataset", root, "--encoder", "colour-test", "--quiet", "--results-dir", tmp_path / "r",
              "--cache-dir", tmp_path / "c")
    code, out = invoke("run", "-m", "text-only", "--prompt", "psuedo=a {text}", *common)
    assert code == 2 and "unknown prompt kind 'psuedo' (kinds: pseudo, text, caption)" in out
    code, out = invoke("run", "-m", "slerp", "-o", "slerp.t=0.5", "-o", "slerp.t=0.7", *common)
    assert code == 2 and "--option slerp.t is given twice ('0.5' and '0.7')" in out


@pytest.mark.parametrize("kwargs,message", [
    ({"methods": []}, "methods=[] names no method"),
    ({"methods": ["slerp"], "options": {"slerp": 0.5}}, "options['slerp'] must map option names to values"),
    ({"methods": ["slerp"], "options": {"slerp": {"t": [0.5]}}}, "option slerp.t=[0.5] must be a float, not list"),
    ({"methods": ["slerp"], "options": {"slerp": {"t": True}}}, "must be a float, not bool"),
    ({"methods": ["image-only"], "batch_size": 0}, "batch_size must be a positive integer"),
])
def test_the_python_api_checks_its_arguments(tmp_path, kwargs, message):
    root = flat_dataset(tmp_path / "ds", QUERIES)
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cirbench.evaluate(datasets=[str(root)], encoder="colour-test", workers=0, cache_dir=tmp_path / "c",
                          results_dir=None, **kwargs)


def test_library_warnings_are_one_cirbench_line(tmp_path):
    """A corrupt cache shard found during a run: one 'warning:' line, not Python's source excerpt."""
    root = flat_dataset(tmp_path / "ds", QUERIES)
    args = ("run", "--dataset", root, "--encoder", "colour-test", "-m", "image-only", "--quiet", "--results-dir",
            tmp_path / "r", "--cache-dir", tmp_path / "c", "--overwrite")
    assert invoke(*args)[0] == 0
    for npy in (tmp_path / "c" / "features").rglob("*.npy"):
        npy.write_bytes(npy.read_bytes()[:-8] + b"\x00" * 8)
    code, out = invoke(*args)
    assert code == 0
    lines = [x for x in out.splitlines() if "corrupt" in x]
    assert lines and all(x.startswith("warning: feature cache shard") for x in lines) and "UserWarning" not in out


def test_float_tiffs_are_scaled_not_saturated(tmp_path):
    from cirbench.protocol.images import load_rgb

    ramp = np.tile(np.linspace(0, 65535, 16, dtype=np.float32), (4, 1))
    Image.fromarray(ramp, "F").save(tmp_path / "f.tif")
    rgb = np.asarray(load_rgb(tmp_path / "f.tif"))
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255 and rgb[0, 8, 0] == round(ramp[0, 8] / 257)
    unit = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (4, 1))
    Image.fromarray(unit, "F").save(tmp_path / "u.tif")
    assert np.asarray(load_rgb(tmp_path / "u.tif"))[0, 8, 0] == round(unit[0, 8] * 255)


def test_a_config_that_is_not_json_fails_its_cell(tmp_path):
    class Opaque(Method):
        name = "opaque"

        def compose(self, reference_features, texts):
            return reference_features

        def config(self):
            return {"model": object()}

    root = flat_dataset(tmp_path / "ds", QUERIES)
    ev = evaluate(root, [Opaque, "image-only"], tmp_path)
    assert {c.method: c.status for c in ev.cells} == {"opaque": "failed", "image-only": "computed"}
    assert "config() must return plain JSON values" in str(ev.failures[0].error)


def test_weicom_on_a_one_image_gallery_says_why(tmp_path):
    root = folder_dataset(tmp_path / "ds", with_train=False)
    for p in sorted((root / "gallery").iterdir())[1:]:
        p.unlink()
    only = sorted((root / "gallery").iterdir())[0].relative_to(root).as_posix()
    (root / "val.jsonl").write_text(json.dumps({"reference": only, "text": "red", "target": only}) + "\n")
    (cell,) = evaluate(root, ["weicom"], tmp_path).cells
    assert cell.status == "failed" and "a gallery of one image has no spread" in str(cell.error)
