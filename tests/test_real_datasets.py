"""The five benchmark adapters on fixtures in the official layouts, with metrics worked out by hand.

Images are flat colours and the colour test encoder's feature is the mean colour, so image-only ranks
by colour: cos(red, red) = 1 > cos(red, yellow) = 0.74 > cos(red, white or gray) = 0.63 >
cos(red, blue) = cos(red, green) = 0.104 (13/255 in the dark channels), and cos(blue, yellow) = 0.108.
Equal scores rank by gallery order.
"""

import json
import shutil

import pytest
from typer.testing import CliRunner

import colour_encoder
import real_fixtures as F
from cirbench.cli import app
from cirbench.contracts.registry import datasets
from cirbench.errors import DataError

colour_encoder.register()


def run(tmp_path, dataset, root, *methods, extra=()):
    args = ["run", "--dataset", dataset, "--data", f"{dataset.split(':')[0]}={root}", "--encoder", "colour-test",
            "--workers", "0", "--json", "--quiet", "--results-dir", str(tmp_path / "results"),
            "--cache-dir", str(tmp_path / "cache"), "-m", ",".join(methods), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    return {(r["dataset"]["split"], r["method"]["name"]): r for r in out["results"]}


def test_fashioniq_protocol(tmp_path):
    root = F.fashioniq(tmp_path / "fashioniq")
    got = run(tmp_path, "fashioniq", root, "image-only", "text-only")
    assert {s for s, _ in got} == {"dress", "shirt", "toptee"}
    # dress: q0 red -> green: image-only ranks red, yellow, green (tie with blue, earlier) -> rank 3;
    #        q1 blue -> itself (the reference is not removed) -> rank 1
    assert got[("dress", "image-only")]["metrics"] == pytest.approx({"R@1": 50.0, "R@5": 100.0, "R@10": 100.0,
                                                                      "R@50": 100.0})
    # text-only reads the official order "c2 and c1": q0 "has short sleeves and is green" -> green first;
    # q1 "is shiny and is yellow" -> yellow, red, green, blue: the blue target at rank 4
    assert got[("dress", "text-only")]["metrics"]["R@1"] == pytest.approx(50.0)
    assert got[("dress", "text-only")]["metrics"]["R@5"] == pytest.approx(100.0)
    record = got[("dress", "image-only")]
    assert record["dataset"]["n_gallery"] == 4 and record["dataset"]["remove_reference"] is False
    assert "c2} and {c1" in record["dataset"]["info"]["caption_rule"]
    split = datasets.get("fashioniq")(root).load("dress")
    assert split.queries[0].text == "has short sleeves and is green"
    assert datasets.get("fashioniq")(root, {"caption_order": "natural"}).load("dress").queries[0].text == \
        "is green and has short sleeves"
    # the feature-fusion methods (slerp, weicom, ...) read the captions in the file's order unless the
    # official order is forced on every method
    assert split.prompts["caption"] == "{c1} and {c2}"
    assert datasets.get("fashioniq")(root, {"caption_order": "official"}).load("dress").prompts["caption"] == \
        "{c2} and {c1}"
    assert split.images["dress0"].suffix == ".png"
    # an image name is everything before the last dot; a file without a known image suffix is not an image
    F.flat(root / "images" / "dress.v2.png", "white", "PNG")
    (root / "images" / "README").write_text("not an image")
    files = datasets.get("fashioniq")(root).image_files()
    assert files["dress.v2"] == root / "images" / "dress.v2.png" and "README" not in files
    assert datasets.get("fashioniq")(root).load("toptee").images["toptee1"].suffix == ".jpg"
    triplets = datasets.get("fashioniq")(root).train_triplets()
    assert len(triplets) == 12
    # each triplet keeps its two captions in the file's order (the Combiner's training draws joins of
    # them as CLIP4Cir does), beside the query text in the dataset's order; the request carries them
    assert all(len(t.captions) == 2 and t.text == f"{t.captions[1]} and {t.captions[0]}" for t in triplets)
    from cirbench.contracts.method import TrainRequest
    from cirbench.training.sources import KINDS

    request = TrainRequest(encoder=None, out=tmp_path)
    KINDS["triplets"].fill(request, datasets.get("fashioniq")(root), {})
    assert request.triplet_captions == [t.captions for t in triplets]
    assert [text for _, text, _ in request.triplets] == [t.text for t in triplets]


def test_fashioniq_captions_in_pic2words_json_folder(tmp_path):
    """Pic2Word keeps the caption files in json/ (SEARLE in captions/): both load alike, and a broken
    training row is named by the file it is in."""
    root = F.fashioniq(tmp_path / "fashioniq")
    before = datasets.get("fashioniq")(root).load("shirt")
    (root / "captions").rename(root / "json")
    after = datasets.get("fashioniq")(root).load("shirt")
    assert [(q.reference, q.text, q.targets) for q in after.queries] == \
        [(q.reference, q.text, q.targets) for q in before.queries]
    assert after.info["captions_file"] == str(root / "json" / "cap.shirt.val.json")
    rows = json.loads((root / "json" / "cap.toptee.train.json").read_text())
    rows[2]["captions"] = "is different"
    (root / "json" / "cap.toptee.train.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"json/cap\.toptee\.train\.json\[2\]: 'captions' must be a list"):
        datasets.get("fashioniq")(root).train_triplets()


@pytest.mark.parametrize("nested", [True, False])
def test_cirr_val_removes_the_reference_and_ranks_subsets(tmp_path, nested):
    root = F.cirr(tmp_path / "cirr", nested=nested)
    got = run(tmp_path, "cirr", root, "image-only")
    m = got[("val", "image-only")]["metrics"]
    # q11: the reference (red, first) is removed, so its red twin (the target) is rank 1;
    # q12: green reference removed -> yellow, white (target) -> rank 2
    assert m["R@1"] == pytest.approx(50.0) and m["R@5"] == pytest.approx(100.0)
    # subsets without the reference: q11 target first; q12: yellow, white (target), blue
    assert m["Rs@1"] == pytest.approx(50.0) and m["Rs@2"] == pytest.approx(100.0) and m["Rs@3"] == 100.0


def test_cirr_test1_writes_the_server_files(tmp_path):
    root = F.cirr(tmp_path / "cirr")
    got = run(tmp_path, "cirr:test1", root, "image-only")
    record = got[("test1", "image-only")]
    assert record["metrics"] == {}
    recall, subset = (json.loads(open(p).read()) for p in record["submission"])
    assert recall["version"] == "rc2" and recall["metric"] == "recall"
    assert subset["version"] == "rc2" and subset["metric"] == "recall_subset"
    # blue reference removed: yellow (cos 0.108) ranks before green (cos 0.104)
    assert recall["7"] == ["test1-0-1-img0", "test1-0-0-img1"]
    assert subset["7"] == ["test1-0-1-img0", "test1-0-0-img1"]
    assert set(recall) == {"version", "metric", "7"}


def test_circo_val_map_with_several_ground_truths(tmp_path):
    root = F.circo(tmp_path / "circo")
    m = run(tmp_path, "circo", root, "image-only")[("val", "image-only")]["metrics"]
    # q0 red reference (kept): reds 1, 2, 5 (GT) then yellow 3 (GT), white 7 ...
    #   AP@5 = (1/3 + 2/4) / min(5, 2) = 5/12
    # q1 blue reference 4: itself, then white 7 (GT) -> AP@5 = (1/2) / 1
    assert m["mAP@5"] == pytest.approx(100 * (5 / 12 + 1 / 2) / 2)
    assert m["mAP@50"] == pytest.approx(100 * (5 / 12 + 1 / 2) / 2)
    assert m["R@5"] == pytest.approx(100.0)  # target_img_id of both within the top 5
    assert sorted(m, key=lambda k: (k[:2], int(k.split("@")[1]))) == [
        "R@5", "R@10", "R@25", "R@50", "mAP@5", "mAP@10", "mAP@25", "mAP@50"]


def test_circo_test_writes_the_server_file(tmp_path):
    root = F.circo(tmp_path / "circo")
    record = run(tmp_path, "circo:test", root, "image-only")[("test", "image-only")]
    submission = json.loads(open(record["submission"][0]).read())
    assert list(submission) == ["3"] and len(submission["3"]) == 7
    assert submission["3"][0] == 3 and all(isinstance(i, int) for i in submission["3"])


def test_the_cirr_server_files_list_the_top_50_and_the_top_3(tmp_path):
    """The CIRR server reads 50 ids per query for recall and 3 for the subset recall; a run without
    subset rankings still writes every pair id (with no subset ids). The train split's images and
    triplets are read from its own files."""
    root = F.cirr(tmp_path / "cirr")
    captions = root / "cirr" / "captions" / "cap.rc2.test1.json"
    rows = [{k: r[k] for k in ("pairid", "reference", "caption")} for r in json.loads(captions.read_text())]
    captions.write_text(json.dumps(rows))  # only the fields a test query needs (no img_set): enough
    ds = datasets.get("cirr")(root)
    split = ds.load("test1")
    pairids = [q.qid for q in split.queries]
    ranked = [[f"img{i}" for i in range(60)] for _ in pairids]
    subset = [[f"s{i}" for i in range(5)] for _ in pairids]
    recall_path, subset_path = split.write_submission(ranked, subset, tmp_path)
    recall, sub = json.loads(recall_path.read_text()), json.loads(subset_path.read_text())
    assert all(recall[p] == ranked[0][:50] and sub[p] == ["s0", "s1", "s2"] for p in pairids)
    recall_path, subset_path = split.write_submission(ranked, None, tmp_path)
    assert {p: v for p, v in json.loads(subset_path.read_text()).items() if p in pairids} == {p: [] for p in pairids}
    (root / "captions").mkdir()  # a stray captions/ beside the nested cirr/ (no image_splits/ there)
    images = datasets.get("cirr")(root).train_images()
    assert sorted(images) == ["train-0-img0", "train-0-img1", "train-1-img0", "train-1-img1"]
    assert all(path.is_file() for path in images.values())
    assert [(t.reference, t.target) for t in ds.train_triplets()] == [("train-0-img0", "train-0-img1"),
                                                                      ("train-1-img0", "train-1-img1")]
    from cirbench.contracts.method import TrainRequest
    from cirbench.training.sources import KINDS

    request = TrainRequest(encoder=None, out=tmp_path)
    KINDS["triplets"].fill(request, ds, {})
    assert request.triplet_captions is None  # one caption a query: the text itself is trained on


def test_cirr_reports_its_recall_cut_offs(tmp_path):
    m = run(tmp_path, "cirr", F.cirr(tmp_path / "cirr"), "image-only")[("val", "image-only")]["metrics"]
    assert sorted(m, key=lambda k: (k[:2], int(k.split("@")[1]))) == ["R@1", "R@5", "R@10", "R@50",
                                                                     "Rs@1", "Rs@2", "Rs@3"]


def test_the_circo_server_file_lists_the_top_50_of_each_query(tmp_path):
    """The evaluation server reads 50 ids per query: a longer ranking is cut at 50, in rank order. The
    query row has only the fields the adapter needs (no shared_concept): that is enough."""
    root = F.circo(tmp_path / "circo")
    (root / "annotations" / "test.json").write_text(json.dumps(
        [{"id": 3, "reference_img_id": 3, "relative_caption": "has two of them"}]))
    split = datasets.get("circo")(root).load("test")
    ranked = [[str(i) for i in range(100, 160)]]
    path, = split.write_submission(ranked, None, tmp_path)
    assert json.loads(path.read_text()) == {"3": list(range(100, 150))}


def test_imagenet_r_domain_conversion(tmp_path):
    root = F.imagenet_r(tmp_path / "imagenet-r")
    got = run(tmp_path, "imagenet-r", root, "image-only")
    # cartoon: q0, q1 (red, class 0): positives red cartoon (rank 1) and yellow cartoon (rank 4 after three reds);
    #          q2 (blue, class 1): the blue cartoon ranks 1
    cartoon = got[("cartoon", "image-only")]["metrics"]
    assert cartoon["R@1"] == pytest.approx(100 * (0.5 + 0.5 + 1) / 3)
    assert cartoon["R@5"] == pytest.approx(100.0)
    # origami: only class 1 has one (gray, rank 3 for the blue query); the class-0 queries score 0
    origami = got[("origami", "image-only")]["metrics"]
    assert origami["R@1"] == 0.0 and origami["R@5"] == pytest.approx(100 / 3)
    # toy: class 0's green toy comes after reds, yellow and gray (rank 6 or 7); class 1 has none
    toy = got[("toy", "image-only")]["metrics"]
    assert toy["R@5"] == 0.0 and toy["R@10"] == pytest.approx(200 / 3)
    assert got[("sculpture", "image-only")]["metrics"]["R@200"] == 0.0
    split = datasets.get("imagenet-r")(root).load("cartoon")
    assert split.prompts == {"pseudo": "a {text} of *", "text": "a {text} of ", "caption": "a {text} of "}
    assert split.info["lists"] == "official"


def test_imagenet_r_lists_built_from_folders_are_seeded(tmp_path):
    root = F.imagenet_r(tmp_path / "imagenet-r", with_lists=False)
    a = datasets.get("imagenet-r")(root, {"seed": "3"}).load("cartoon")
    b = datasets.get("imagenet-r")(root, {"seed": "3"}).load("cartoon")
    assert [q.reference for q in a.queries] == [q.reference for q in b.queries]
    assert a.info["lists"] == "built from folders" and a.info["seed"] == 3
    assert len(a.queries) == 3 and len(a.gallery) == 5 + 3


def test_imagenet_r_lists_built_from_folders_follow_the_official_labels(tmp_path):
    """Without list files: 50 real images drawn per class (a class of 51 loses one), only classes in both
    folders, renditions labelled class + 1000 * domain (other names skipped), the drawn real images
    added to the gallery at class + 6000, and seed 0 unless one is set (the draw is Python's
    random.Random(seed).sample over the sorted names)."""
    import random

    root = tmp_path / "imagenet-r"
    real = {"n001": [f"ILSVRC2012_val_{i:03d}.JPEG" for i in range(51)], "n002": ["b.JPEG", "a.JPEG"],
            "n003": ["only_real.JPEG"]}
    renditions = {"n001": ["toy_0.jpg", "cartoon_0.jpg", "sketch_0.jpg"], "n002": ["sculpture_0.jpg"],
                  "n004": ["cartoon_0.jpg"]}
    for folder, files in (("real", real), ("imagenet-r", renditions)):
        for wnid, names in files.items():
            (root / folder / wnid).mkdir(parents=True)
            for name in names:
                (root / folder / wnid / name).write_bytes(b"")
    queries, targets, info = datasets.get("imagenet-r")(root).lists()
    drawn = sorted(random.Random(0).sample(sorted(real["n001"]), 50))
    expected_queries = [(f"imgnet/real/n001/{n}", 0) for n in drawn] + [("imgnet/real/n002/a.JPEG", 1),
                                                                         ("imgnet/real/n002/b.JPEG", 1)]
    assert queries == expected_queries
    assert targets == [("imgnet/imagenet-r/n001/cartoon_0.jpg", 0), ("imgnet/imagenet-r/n001/toy_0.jpg", 2000),
                       ("imgnet/imagenet-r/n002/sculpture_0.jpg", 3001),
                       *[(path, label + 6000) for path, label in expected_queries]]
    assert info == {"lists": "built from folders", "seed": 0, "classes": 2}


def test_imagenet_r_list_files_are_read_whole_and_checked(tmp_path):
    """A blank line inside a list is skipped, not the end of it; a query label is a class index (0-999:
    1000 would be a cartoon label, matched to another domain's targets); one list without the other is
    named; a list given by --set that is not there is an error, never lists quietly built from folders.
    The cut-offs are the code's 1, 5, 10, 50, 100, 200, and a hit-rate run writes its own result file."""
    from cirbench.errors import DataError

    root = F.imagenet_r(tmp_path / "imagenet-r")
    query_list = root / "imgnet_real_query.txt"
    lines = query_list.read_text().splitlines()
    query_list.write_text("\n".join([lines[0], "", *lines[1:]]) + "\n")
    split = datasets.get("imagenet-r")(root).load("cartoon")
    assert len(split.queries) == 3
    assert split.metrics == {"positive_recall": [1, 5, 10, 50, 100, 200]} and split.main_metrics == ["R@10", "R@50"]
    hit = datasets.get("imagenet-r")(root, {"metric": "hit"})
    assert hit.load("cartoon").metrics == {"recall": [1, 5, 10, 50, 100, 200]}
    assert (datasets.get("imagenet-r")(root).result_name, hit.result_name) == ("imagenet-r", "imagenet-r-hit")
    # the bad label on the third line of the file (a blank line before it): named with that line
    first, second = (line.rsplit(" ", 2)[0] for line in lines[:2])
    for label in ("1000", "-1"):
        query_list.write_text(f"{first} 999\n\n{second} {label}\n")
        with pytest.raises(DataError, match=rf"imgnet_real_query.txt:3: query label {label} is not a class index "
                                            r"\(0-999\)"):
            datasets.get("imagenet-r")(root).load("cartoon")
    query_list.write_text(f"{first} 999\n\n{second} 0\n")  # 999 is a class (with no cartoon target here)
    split = datasets.get("imagenet-r")(root).load("cartoon")
    assert [len(q.targets) for q in split.queries] == [0, 2] and split.info["queries_with_a_positive"] == 1
    query_list.write_text(f"{first} 0 extra\n")  # three fields: refused, not read as a path and a label
    with pytest.raises(DataError, match=r"imgnet_real_query.txt:1: expected 'relative/path label'"):
        datasets.get("imagenet-r")(root).load("cartoon")
    both = r" is missing \(both imgnet_real_query.txt and imgnet_targets.txt are needed\)"
    query_list.unlink()
    with pytest.raises(DataError, match=f"list file {query_list}{both}"):
        datasets.get("imagenet-r")(root).load("cartoon")
    query_list.write_text("\n".join(lines) + "\n")
    (root / "imgnet_targets.txt").unlink()
    with pytest.raises(DataError, match=f"list file {root / 'imgnet_targets.txt'}{both}"):
        datasets.get("imagenet-r")(root).load("cartoon")
    bare = F.imagenet_r(tmp_path / "bare", with_lists=False)
    with pytest.raises(DataError, match=f"list file {tmp_path / 'nope.txt'} is missing"):
        datasets.get("imagenet-r")(bare, {"query_list": str(tmp_path / "nope.txt")}).load("cartoon")
    # without list files, both folders are needed: a missing one is named (not a crash listing it)
    shutil.rmtree(bare / "imagenet-r")
    with pytest.raises(DataError, match=f"{bare / 'imagenet-r'} is missing and there are no list files"):
        datasets.get("imagenet-r")(bare).load("cartoon")


def test_official_imagenet_r_lists_parse():
    from pathlib import Path

    from cirbench.datasets.imagenet_r import read_list

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-r-domain-conversion"
    if not data.is_dir():
        pytest.skip("shared/data is not beside this checkout")
    queries = read_list(data / "imgnet_real_query.txt")
    targets = read_list(data / "imgnet_targets.txt")
    assert len(queries) == 10000 and len({lab for _, lab in queries}) == 200
    counts = {}
    for _, label in targets:
        counts[label // 1000] = counts.get(label // 1000, 0) + 1
    assert counts == {0: 3726, 1: 550, 2: 1511, 3: 1196, 6: 10000}
    # the official quirk: a share of the queries has no positive in a domain
    classes = {lab for _, lab in queries}
    for d, share in zip(range(4), (76.5, 53, 72, 71)):
        with_positive = {lab % 1000 for _, lab in targets if lab // 1000 == d}
        assert round(100 * len(classes & with_positive) / len(classes)) == round(share)


def test_test_server_splits_in_the_table_and_the_report(tmp_path):
    root = F.cirr(tmp_path / "cirr")
    args = ["run", "--dataset", "cirr:test1", "--data", f"cirr={root}", "--encoder", "colour-test", "--workers", "0",
            "--quiet", "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"),
            "-m", "image-only"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "submission file" in result.stdout and "cirr_test1_recall.json" in result.stdout
    result = CliRunner().invoke(app, ["report", "--results-dir", str(tmp_path / "results"), "--out",
                                      str(tmp_path / "reports")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "reports" / "results.md").read_text()
    assert "## Test-server submissions" in md and "cirr_test1_recall_subset.json" in md


def test_folder_metrics_follow_what_the_queries_give(tmp_path):
    """Without a settings file: recall at 1, 5, 10, 50 always; recall within the subset at 1, 2, 3 once
    a query has a subset; mAP at 5, 10, 25, 50 once a query has two or more targets (one target each, or
    none, gives no mAP)."""
    from helpers import folder_dataset

    root = folder_dataset(tmp_path / "own", with_train=False)
    path = root / "val.jsonl"

    def metrics(rows):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return datasets.get("folder")(root).load("val").metrics

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert metrics(rows) == {"recall": [1, 5, 10, 50], "recall_subset": [1, 2, 3]}
    for row in rows:
        row.pop("subset")
    assert metrics(rows) == {"recall": [1, 5, 10, 50]}
    test_split = [{k: v for k, v in r.items() if k != "target"} for r in rows]
    assert metrics(test_split) == {"recall": [1, 5, 10, 50]}
    rows[0]["targets"] = [rows[0].pop("target"), rows[1]["target"]]
    assert metrics(rows) == {"recall": [1, 5, 10, 50], "map": [5, 10, 25, 50]}


def test_folder_splits_gallery_list_and_settings(tmp_path):
    """The splits are every <split>.jsonl but train.jsonl, one sorting before "train" and one after it
    (so a comparison in place of "is not train" drops one of them); gallery.txt gives the gallery in its
    own order (reverse-sorted here, so a sorted listing differs) and a line climbing out of the folder
    is named with the file; without cirbench.json the reference stays a candidate and the default
    prompts and main metrics hold, and each setting given replaces only its own default."""
    from cirbench.contracts.split import DEFAULT_PROMPTS
    from helpers import folder_dataset

    root = folder_dataset(tmp_path / "own")
    for name in ("a", "test"):
        shutil.copy(root / "val.jsonl", root / f"{name}.jsonl")
    folder = datasets.get("folder")(root)
    assert folder.available_splits() == folder.default_splits == ("a", "test", "val")
    twin = datasets.get("folder")(folder_dataset(tmp_path / "elsewhere" / "own", with_train=False))
    assert folder.result_name.startswith("own-") and twin.result_name.startswith("own-")
    assert folder.result_name != twin.result_name  # two folders of one name never share results

    split = folder.load("val")
    assert split.remove_reference is False and split.prompts == DEFAULT_PROMPTS
    assert split.main_metrics == ["R@1", "R@10", "R@50"]
    listed = sorted(split.gallery, reverse=True)
    assert listed != split.gallery
    (root / "gallery.txt").write_text("\n".join(listed[:3] + [""] + listed[3:]) + "\n")
    split = folder.load("val")
    assert split.gallery == listed and all(split.images[g] == root / g for g in listed)
    (root / "gallery.txt").write_text("\n".join(listed + ["../elsewhere.png"]) + "\n")
    with pytest.raises(DataError, match=r"gallery.txt:19: path '../elsewhere.png' escapes the dataset folder"):
        folder.load("val")
    (root / "gallery.txt").unlink()

    (root / "cirbench.json").write_text(json.dumps(
        {"remove_reference": True, "prompts": {"text": "edit: {text}"}, "main_metrics": ["R@5"]}))
    split = folder.load("val")
    assert split.remove_reference is True and split.main_metrics == ["R@5"]
    assert split.prompts == {**DEFAULT_PROMPTS, "text": "edit: {text}"} != DEFAULT_PROMPTS


def test_folder_refuses_what_it_cannot_read_naming_the_place(tmp_path):
    """Each bad thing alone in an otherwise good folder, named by file (and line). The bad image of a
    subset or of targets comes second in its list, so a check that stopped at the first would pass it."""
    from helpers import folder_dataset

    root = folder_dataset(tmp_path / "own")
    path = root / "val.jsonl"
    good = [json.loads(line) for line in path.read_text().splitlines()]
    folder = datasets.get("folder")(root)

    def refused(rows, message, split="val"):
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        with pytest.raises(DataError, match=message):
            folder.load(split)

    outside = "train/circle_red.png"  # inside the folder, but not a gallery image
    q = good[1]
    refused([good[0], {**q, "subset": [q["subset"][0], outside]}],
            rf"val.jsonl:2: subset image '{outside}' is not in the gallery")
    refused([good[0], {**{k: v for k, v in q.items() if k != "target"}, "targets": [q["target"], outside]}],
            rf"val.jsonl:2: target '{outside}' is not in the gallery")
    refused([good[0], {k: v for k, v in q.items() if k != "text"}], "val.jsonl:2: missing field 'text'")
    refused([good[0], {**q, "text": 3}], "val.jsonl:2: 'text' must be a string")
    refused([good[0], {**q, "id": True}], "val.jsonl:2: 'id' must be a string or an integer")
    refused([good[0], {k: v for k, v in q.items() if k != "target"}], r"val.jsonl:2: this query has no target")
    refused([], "val.jsonl: holds no queries")
    path.write_text("\n".join(json.dumps(r) for r in good) + "\n")
    (root / "cirbench.json").write_text("[1, 2]")
    with pytest.raises(DataError, match=r"cirbench.json: expected a JSON object"):
        folder.load("val")
    (root / "cirbench.json").unlink()
    assert len(folder.load("val").queries) == len(good)

    # train.jsonl: the triplets in file order; a row without its fields is named with its line
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text().splitlines()]
    assert [(t.reference, t.text, t.target) for t in folder.train_triplets()] == [
        (r["reference"], r["text"], r["target"]) for r in rows]
    (root / "train.jsonl").write_text("\n".join([json.dumps(rows[0]), "", json.dumps({"reference": "x.png"})]))
    with pytest.raises(DataError, match=r"train.jsonl:3: missing field\(s\) text, target"):
        folder.train_triplets()
    (root / "train.jsonl").unlink()
    with pytest.raises(DataError, match=r"no train.jsonl with training triplets"):
        folder.train_triplets()
