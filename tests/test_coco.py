"""COCO object composition: the official preparation (seeded, recorded) and evaluation protocol.

The fixture (real_fixtures.coco) holds five 20x20 images; the official candidate rule is the bounding
box's area in pixels, 0.05 < w*h < 0.5 * 400, crowds included:
  1: a 10x10-box "dog" triangle (area 100) and a 1x1 "cat" -> both candidates
  2: an 8x8 "cat" square (64) and a 20x15 "dog" (300, too big) -> the cat
  3: one 8x8 "dog" -> kept although it has no other class (the official script keeps it)
  4: two 1x1 objects -> both candidates (the lower bound is in pixels)
  5: an 8x8 "dog", an 8x8 "bird" and a 1x1 "cat" -> three candidates
"""

import csv
import json
import random

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import colour_encoder
import real_fixtures as F
from cirbench.cli import app
from cirbench.errors import UsageError

colour_encoder.register()
try:
    import pycocotools  # noqa: F401  (the coco extra; the test extra installs it)
    HAVE_COCOTOOLS = True
except ImportError:
    HAVE_COCOTOOLS = False
# only the tests that prepare queries from the masks need pycocotools; the others (the official files,
# the crop, the message naming the missing extra) run without it
needs_pycocotools = pytest.mark.skipif(not HAVE_COCOTOOLS, reason='pycocotools (pip install -e ".[coco]")')


def prepare(tmp_path, seed=0, extra=()):
    args = ["data", "prepare", "coco", "--data-root", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
            "--set", f"seed={seed}", "--quiet", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def prepared(tmp_path, seed=0):
    folders = list((tmp_path / "cache" / "prepared" / "coco").glob(f"*/seed-{seed}"))
    assert len(folders) == 1
    return folders[0]


def rows(folder):
    with open(folder / "coco_eval.csv", newline="") as fh:
        return list(csv.reader(fh))


@needs_pycocotools
def test_prepare_follows_the_official_script_and_writes_under_the_cache(tmp_path):
    root = F.coco(tmp_path / "coco")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    out = prepare(tmp_path)
    assert "5 queries from 5 annotated images (seed 0)" in out
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before  # the dataset folder is not written
    folder = prepared(tmp_path)
    table = rows(folder)
    assert table[0] == ["id", "query_regions", "query_class", "classes"]
    by_id = {r[0]: r for r in table[1:]}
    assert list(by_id) == [f"{i:012d}.jpg" for i in range(1, 6)]  # sorted by id, every image kept
    assert by_id["000000000002.jpg"][1:] == ["4;4;12;12 ", "cat", "dog"]  # box as x1;y1;x2;y2 + a space
    assert by_id["000000000003.jpg"][1:] == ["2;2;10;10 ", "dog", ""]  # a single-class image is kept
    # the masked image: outside the object's mask white, inside it the object's colour (JPEG-compressed)
    masked = np.asarray(Image.open(folder / "val2017_masked" / "000000000002.jpg").convert("RGB")).astype(int)
    assert (masked[1, 1] > 240).all() and (masked[17, 17] > 240).all()
    assert masked[8, 8, 0] > 200 and masked[8, 8, 1] > 200 and masked[8, 8, 2] < 80  # yellow
    meta = json.loads((folder / "cirbench_prepare.json").read_text())
    assert meta["seed"] == 0 and meta["queries"] == 5 and meta["annotations_sha256"]


@needs_pycocotools
def test_the_draw_is_random_sample_over_candidates_in_annotation_order(tmp_path):
    root = F.coco(tmp_path / "coco")
    annotations = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    names = {c["id"]: c["name"] for c in annotations["categories"]}
    candidates: dict = {}
    for ann in annotations["annotations"]:
        x, y, w, h = ann["bbox"]
        if 0.05 < w * h < 0.5 * 400:
            candidates.setdefault(ann["image_id"], []).append(names[ann["category_id"]])
    seen = set()
    for seed in range(6):
        prepare(tmp_path, seed)
        rng = random.Random(seed)  # what the official script draws after random.seed(seed)
        expected = {i: rng.sample(cands, k=1)[0] for i, cands in candidates.items()}
        got = {int(r[0][:12]): r[2] for r in rows(prepared(tmp_path, seed))[1:]}
        assert got == expected, seed
        seen.add(got[5])
    assert len(seen) > 1  # the seed decides
    first = (prepared(tmp_path, 0) / "coco_eval.csv").read_bytes()
    prepare(tmp_path, 0)
    assert (prepared(tmp_path, 0) / "coco_eval.csv").read_bytes() == first  # reproducible


def test_official_artefacts_in_the_dataset_folder_are_used_as_they_are(tmp_path):
    from cirbench.protocol.images import ImageRef
    from cirbench.contracts.registry import datasets

    root = F.coco(tmp_path / "coco")
    (root / "val2017_masked").mkdir()
    for i in (1, 2):
        Image.new("RGB", (20, 20), (0, 0, 255)).save(root / "val2017_masked" / f"{i:012d}.jpg")
    (root / "coco_eval.csv").write_text("id,query_regions,query_class,classes\n"
                                        "000000000001.jpg,2.7;2.2;12.9;12.5 ,dog,cat;bird\n"
                                        "000000000002.jpg,4;4;12;12 ,cat,\n")
    split = datasets.get("coco")(root).load("val")
    assert split.info["queries"] == "the official coco_eval.csv and val2017_masked/"
    q1, q2 = split.queries
    assert q1.text == "dog and cat and bird" and q2.text == "cat and "
    ref = split.images[q1.reference]
    # the box is read as the official loader does, int(float(x)); the crop is squashed, not centre-cropped
    assert isinstance(ref, ImageRef) and ref.ops == (("crop", 2, 2, 12, 12), ("squash",))
    assert ref.path == root / "val2017_masked" / "000000000001.jpg"
    assert split.gallery == ["val2017/000000000001.jpg", "val2017/000000000002.jpg"]
    assert split.prompts["pseudo"] == "a photo of * and {text}" and split.prompts["text"] == "a photo of {text}"


def test_the_query_crop_is_squashed_to_the_encoder_square(tiny_encoder, tmp_path):
    from cirbench.protocol.images import ImageRef, load_rgb

    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, :10] = (255, 0, 0)  # a red band on the left ...
    image[:, 30:] = (0, 0, 255)  # ... and a blue one on the right
    Image.fromarray(image).save(tmp_path / "m.png")
    ref = ImageRef(tmp_path / "m.png", (("crop", 0, 0, 40, 20), ("squash",)))
    pixels = tiny_encoder.squash_preprocess(load_rgb(ref))
    assert pixels.shape[-2:] == (32, 32)
    # squashed: both bands survive (a centre crop would cut them)
    assert pixels[0, 16, 1] > 0.5 and pixels[2, 16, -2] > 0.5
    cropped = tiny_encoder.preprocess(load_rgb(ref))
    assert cropped[0, 16, 1] < 0  # the centre crop loses the red band


@needs_pycocotools
def test_run_on_prepared_queries_with_the_official_ranks(tmp_path):
    F.coco(tmp_path / "coco")
    args = ["run", "--dataset", "coco", "--data-root", str(tmp_path), "--encoder", "colour-test", "-m",
            "text-only", "--workers", "0", "--json", "--quiet", "--results-dir", str(tmp_path / "r"),
            "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "cirbench data prepare coco" in result.output
    prepare(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["results"][0]
    # no colour word in any text: every text feature is the same, every gallery image ties, and the
    # tie rule ranks by gallery order -- query i's target is at rank i (1..5)
    assert record["metrics"]["R@1"] == pytest.approx(20.0) and record["metrics"]["R@5"] == 100.0
    assert record["metrics"]["mean_rank"] == 3.0 and record["metrics"]["median_rank"] == 3.0
    assert record["dataset"]["info"]["queries"] == "cirbench data prepare coco, seed 0"
    assert record["dataset"]["n_queries"] == 5


@needs_pycocotools
def test_an_image_pillow_refuses_to_decode_is_named(tmp_path):
    # a PNG (under the .jpg name) whose text chunk inflates past Pillow's limit: Pillow raises ValueError,
    # not OSError, and the preparation must name the file rather than crash
    from PIL import PngImagePlugin

    root = F.coco(tmp_path / "coco")
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "a" * 2_000_000, zip=True)
    Image.new("RGB", (20, 20)).save(root / "val2017" / "000000000003.jpg", format="PNG", pnginfo=info)
    result = CliRunner().invoke(app, ["data", "prepare", "coco", "--data-root", str(tmp_path), "--quiet",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "000000000003.jpg: cannot read image (Decompressed data too large" in result.output


@needs_pycocotools
def test_an_instances_file_without_its_three_lists_is_named(tmp_path):
    root = F.coco(tmp_path / "coco")
    path = root / "annotations" / "instances_val2017.json"
    instances = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in instances.items() if k != "categories"}))
    result = CliRunner().invoke(app, ["data", "prepare", "coco", "--data-root", str(tmp_path), "--quiet",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2
    assert "expected a COCO instances file (images, annotations, categories)" in result.output
    assert not list((tmp_path / "cache").rglob("coco_eval.csv"))  # nothing half-written


@needs_pycocotools
def test_prepare_writes_where_out_says(tmp_path):
    F.coco(tmp_path / "coco")
    prepare(tmp_path, extra=["--out", str(tmp_path / "mine")])
    assert (tmp_path / "mine" / "coco_eval.csv").is_file() and (tmp_path / "mine" / "val2017_masked").is_dir()
    from cirbench.contracts.registry import datasets

    split = datasets.get("coco")(tmp_path / "coco", {"prepared": str(tmp_path / "mine")}).load("val")
    assert len(split.queries) == 5


def test_missing_pycocotools_names_the_extra(tmp_path, monkeypatch):
    import builtins

    F.coco(tmp_path / "coco")
    real_import = builtins.__import__

    def no_pycocotools(name, *args, **kwargs):
        if name.startswith("pycocotools"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pycocotools)
    result = CliRunner().invoke(app, ["data", "prepare", "coco", "--data-root", str(tmp_path), "--quiet",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2 and 'pip install -e ".[coco]"' in result.output


def rle_counts(mask):
    """COCO's uncompressed RLE of a 0/1 mask, written here from the format's definition: the lengths of
    alternating runs of 0s and 1s (starting with 0s) over the mask read column by column."""
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    return counts + [run]


def odd_coco(root):
    """Four images the main fixture lacks: non-square ones (a swapped height and width cannot pass), a
    greyscale one, a crowd as uncompressed RLE, a compressed RLE, and objects on the candidate bounds.
      1: 'L', 30 wide x 16 high (area 480, bound 240): a grey-60 "dog" polygon (box 12 x 10 = 120, the only
         candidate, covering the JPEG block x 8-15, y 0-7 whole), a "cat" box of 24 x 10 = 240 (the bound
         itself: not a candidate), a "bird" of no width
      2: RGB, 12 wide x 24 high (bound 144): a crowd "cat" as uncompressed RLE, box 4 x 18 = 72
      3: RGB, 20 wide x 10 high (bound 100): a "bird" as compressed RLE, box 8 x 8 = 64 (under the
         bound 100, over the 50 that a height-squared area would give)
      4: RGB 20 x 20 (bound 200): a "dog" of 0.25 x 0.2 = 0.05 and a "cat" of 20 x 10 = 200, both on the
         bounds: no candidate, no row"""
    from pycocotools import mask as mask_utils

    def rect(x, y, w, h):
        return [[x, y, x + w, y, x + w, y + h, x, y + h]]

    (root / "val2017").mkdir(parents=True)
    grey = np.full((16, 30), 200, dtype=np.uint8)
    grey[0:10, 8:20] = 60
    Image.fromarray(grey, "L").save(root / "val2017" / "000000000001.jpg", quality=100)
    tall = np.zeros((24, 12, 3), dtype=np.uint8)
    tall[:] = (13, 255, 13)
    tall[2:20, 1:5] = (13, 13, 255)
    Image.fromarray(tall).save(root / "val2017" / "000000000002.jpg", quality=100)
    wide = np.zeros((10, 20, 3), dtype=np.uint8)
    wide[:] = (255, 13, 13)
    wide[1:9, 10:18] = (255, 255, 13)
    Image.fromarray(wide).save(root / "val2017" / "000000000003.jpg", quality=100)
    Image.new("RGB", (20, 20), (128, 128, 128)).save(root / "val2017" / "000000000004.jpg", quality=100)
    crowd = np.zeros((24, 12), dtype=np.uint8)
    crowd[2:20, 1:5] = 1
    bird = np.zeros((10, 20), dtype=np.uint8)
    bird[1:9, 10:18] = 1
    compressed = mask_utils.encode(np.asfortranarray(bird))
    anns = [  # image 4 (no candidate) annotated first: the images after it must still be prepared
        (4, 1, rect(0, 0, 0.25, 0.2), [0, 0, 0.25, 0.2], 0), (4, 2, rect(0, 0, 20, 10), [0, 0, 20, 10], 0),
        (1, 1, rect(8, 0, 12, 10), [8, 0, 12, 10], 0), (1, 2, rect(0, 0, 24, 10), [0, 0, 24, 10], 0),
        (1, 3, [[5, 5, 5, 8, 5, 6]], [5, 5, 0, 3], 0),
        (2, 2, {"counts": rle_counts(crowd), "size": [24, 12]}, [1, 2, 4, 18], 1),
        (3, 3, {"counts": compressed["counts"].decode(), "size": [10, 20]}, [10, 1, 8, 8], 0)]
    sizes = {1: (30, 16), 2: (12, 24), 3: (20, 10), 4: (20, 20)}
    F.dump(root / "annotations" / "instances_val2017.json", {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h} for i, (w, h) in sizes.items()],
        "annotations": [{"id": n + 1, "image_id": i, "category_id": c, "segmentation": s, "bbox": b, "iscrowd": crowd_,
                         "area": float(b[2] * b[3])} for n, (i, c, s, b, crowd_) in enumerate(anns)],
        "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "bird"}]})
    return root


@needs_pycocotools
def test_prepare_on_greyscale_non_square_crowd_and_rle_objects(tmp_path):
    odd_coco(tmp_path / "coco")
    out = prepare(tmp_path)
    assert "3 queries from 4 annotated images (seed 0); 1 without a candidate object" in out
    folder = prepared(tmp_path)
    assert rows(folder)[1:] == [["000000000001.jpg", "8;0;20;10 ", "dog", "cat;bird"],
                                ["000000000002.jpg", "1;2;5;20 ", "cat", ""],
                                ["000000000003.jpg", "10;1;18;9 ", "bird", ""]]

    def masked(i):
        return Image.open(folder / "val2017_masked" / f"{i:012d}.jpg")

    grey = masked(1)
    assert grey.mode == "L" and grey.size == (30, 16)  # greyscale stays one channel, height x width kept
    pixels = np.asarray(grey).astype(int)
    # a JPEG block of one value decodes to it exactly (its DC term is a multiple of the step): the object's
    # block is 60 itself and a block outside it 255 itself (white, not 254; not 60 - 2 from a wrapped sum)
    assert (pixels[0:8, 8:16] == 60).all() and (pixels[8:16, 24:30] == 255).all()
    assert pixels[0, 0] > 240 and (pixels[13:, 20:] > 240).all()
    tall = np.asarray(masked(2).convert("RGB")).astype(int)
    assert tall.shape == (24, 12, 3)
    assert tall[15, 3, 2] > 150 and tall[15, 3, 1] < 100  # the crowd's blue inside its RLE mask ...
    assert (tall[5, 9] > 200).all() and (tall[22, 3] > 200).all()  # ... white outside it (not green)
    wide = np.asarray(masked(3).convert("RGB")).astype(int)
    assert wide.shape == (10, 20, 3) and wide[5, 13, 2] < 80 and wide[5, 13, 1] > 200  # yellow bird
    assert (wide[5, 3] > 200).all()
    assert not (folder / "val2017_masked" / "000000000004.jpg").exists()
    assert json.loads((folder / "cirbench_prepare.json").read_text())["without_candidate"] == 1


def test_a_bad_coco_query_file_is_named_with_its_line(tmp_path):
    from cirbench.contracts.registry import datasets
    from cirbench.errors import DataError

    root = F.coco(tmp_path / "coco")
    (root / "val2017_masked").mkdir()
    good = "000000000001.jpg,2;2;12;12 ,dog,cat\n"
    for body, message in (
            (good + "000000000002.jpg,4;4;12 ,cat,\n",
             r"coco_eval.csv:3: query_regions must be 'x1;y1;x2;y2', got '4;4;12 '"),
            (good + "000000000002.jpg,4;4;x;12 ,cat,\n", r"coco_eval.csv:3: query_regions must be"),
            (good + "000000000002.jpg,4;4;12;12;1 ,cat,\n", r"coco_eval.csv:3: query_regions must be")):
        (root / "coco_eval.csv").write_text("id,query_regions,query_class,classes\n" + body)
        with pytest.raises(DataError, match=message):
            datasets.get("coco")(root).load("val")
    (root / "coco_eval.csv").write_text("id,query_regions,query_class\n" + good)
    with pytest.raises(DataError, match="coco_eval.csv: expected the columns id, query_regions, query_class, classes"):
        datasets.get("coco")(root).load("val")
    (root / "coco_eval.csv").write_text("id,query_regions,query_class,classes,note\n" + good.replace("\n", ",x\n"))
    split = datasets.get("coco")(root).load("val")  # a column beyond the four is left alone
    assert split.queries[0].fields == {"query_class": "dog", "others": "cat", "classes": ["cat"]}
    assert split.metrics == {"recall": [1, 5, 10, 50, 100], "rank": []} and split.main_metrics == ["R@1", "R@5", "R@10"]
    assert split.info["queries_file"] == str(root / "coco_eval.csv")
    seeded = datasets.get("coco")(root, {"seed": "4"})  # a seed asks for cirbench's own preparation
    with pytest.raises(DataError, match=r"no COCO queries: .*seed-4.*coco_eval.csv is missing.*--set seed=4"):
        seeded.load("val")
    with pytest.raises(UsageError, match="seed must be an integer"):
        datasets.get("coco")(root, {"seed": "x"})


@needs_pycocotools
def test_prepare_counts_each_annotated_image_in_its_progress(tmp_path):
    from cirbench.datasets.coco import prepare_rows
    from helpers import RecordingProgress

    root = F.coco(tmp_path / "coco")
    progress = RecordingProgress()
    annotations = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    rows_, counts = prepare_rows(annotations, root / "val2017", tmp_path / "masked", random.Random(0), progress)
    assert progress.tasks == [("prepare coco", 5)] and progress.advanced == 5 and progress.finished
    assert len(rows_) == 5
    assert counts == {"images_with_annotations": 5, "without_candidate": 0}
