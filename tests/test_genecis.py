"""GeneCIS on a fixture in the official layout, with metrics worked out by hand.

Colour test encoder: image feature = mean colour, text feature = the first colour word. Per-query
galleries are [target] + gallery, the official tensor, whose order breaks exact ties.
q0: green reference, red target among an identical red image and white: image-only ranks white
(cos .635) first, then the two reds tied, the target first: rank 2; "red" ties the two reds: rank 1.
q1: blue reference, yellow target among blue and white: image-only rank 3; "yellow" rank 1.
q2: green reference, white target among red and blue: image-only white .635 > .104: rank 1; "white" 1.
The attribute tasks repeat the pattern on Visual Genome crops (q1's gallery holds the reference image).
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import colour_encoder
import real_fixtures as F
from cirbench.cli import app
from cirbench.contracts.registry import datasets

colour_encoder.register()


def run(tmp_path, root, methods="image-only,text-only,image+text", extra=()):
    result = CliRunner().invoke(app, ["run", "--dataset", "genecis", "--data", f"genecis={root}", "--encoder",
                                      "colour-test", "-m", methods, "--workers", "0", "--json", "--quiet",
                                      "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), *extra])
    assert result.exit_code == 0, result.output
    return {(r["dataset"]["split"], r["method"]["name"]): r for r in json.loads(result.stdout)["results"]}


def test_templates_become_per_query_galleries_in_the_official_order(tmp_path):
    root = F.genecis(tmp_path / "genecis")
    split = datasets.get("genecis")(root).load("change_object")
    assert split.scope == "subset" and len(split.queries) == 3
    q = split.queries[1]
    assert q.text == "yellow" and q.subset == ("coco/4", "coco/8", "coco/5") and q.targets == ("coco/4",)
    assert q.reference == "coco/3" and q.reference not in q.subset  # the reference is not in the gallery
    assert split.queries[0].subset == ("coco/1", "coco/7", "coco/5")
    attr = datasets.get("genecis")(root).load("focus_attribute")
    ref = attr.images[attr.queries[0].reference]
    assert ref.ops == (("dilated_crop", 5, 5, 10, 8, 0.7), ("pad_square", 0, 0, 0))
    assert attr.images["vg/2005#1,2,12,9"].path.parent.name == "VG_100K_2"  # both of VG 1.2's folders
    # what the result records about the images of each kind of task
    assert split.info["images"] == "COCO val2017"
    assert attr.info["images"] == "VG crops dilated 0.7 and padded square"


def test_the_official_dilated_crop_padded_square():
    from cirbench.protocol.images import dilated_box

    # box x=20, y=10, w=10, h=4 in a 40 x 30 image: left = 20 - 7 = 13, top = 10 - 2.8 = 7.2,
    # right = 13 + 17 = 30, bottom = 7.2 + 6.8 = 14 -- grown to the left and top only
    assert dilated_box((40, 30), 20, 10, 10, 4, 0.7) == pytest.approx((13, 7.2, 30, 14))
    # clipped at the image: x=2 -> left 0, right = 0 + 17
    assert dilated_box((40, 30), 2, 0, 10, 4, 0.7) == pytest.approx((0, 0, 17, 6.8))


def test_crop_and_pad_on_pixels(tmp_path):
    from cirbench.protocol.images import ImageRef, load_rgb

    pixels = np.zeros((30, 40, 3), dtype=np.uint8)
    pixels[:, 13:] = (255, 0, 0)
    Image.fromarray(pixels).save(tmp_path / "vg.png")
    out = np.asarray(load_rgb(ImageRef(tmp_path / "vg.png", (("dilated_crop", 20, 10, 10, 4, 0.7),
                                                              ("pad_square", 0, 0, 0)))))
    # PIL rounds the box to (13, 7, 30, 14): a 17 x 7 red crop, padded with black to 17 x 17 (rows 5-11)
    assert out.shape == (17, 17, 3)
    assert (out[4, :, 0] == 0).all() and (out[5, :, 0] == 255).all() and (out[11, :, 0] == 255).all()
    assert (out[12, :, 0] == 0).all()


def test_metrics_by_hand_and_the_average_of_the_four_tasks(tmp_path):
    root = F.genecis(tmp_path / "genecis")
    got = run(tmp_path, root)
    for task in ("focus_object", "change_object", "focus_attribute", "change_attribute"):
        image = got[(task, "image-only")]["metrics"]
        assert image == pytest.approx({"R@1": 100 / 3, "R@2": 200 / 3, "R@3": 100.0}), task
        assert got[(task, "text-only")]["metrics"] == pytest.approx({"R@1": 100.0, "R@2": 100.0, "R@3": 100.0})
        record = got[(task, "image+text")]
        assert record["dataset"]["scope"] == "subset" and record["method"]["config"]["combine"] == "raw"
        assert record["dataset"]["n_queries"] == 3
    assert CliRunner().invoke(app, ["report", "--results-dir", str(tmp_path / "r"), "--out",
                                    str(tmp_path / "out"), "--no-html"]).exit_code == 0
    md = (tmp_path / "out" / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| encoder | method | focus_attribute R@1"))
    order = [header.index(t) for t in ("focus_attribute R@1", "change_attribute R@1", "focus_object R@1",
                                       "change_object R@1", "average R@1")]
    assert order == sorted(order)
    assert "| colour-test | image-only | 33.33" in md


def test_raw_average_is_the_genecis_baseline(tmp_path):
    """FeatureComb: normalise(0.5 image + 0.5 text) of the raw features; --option forces the other."""
    root = F.genecis(tmp_path / "genecis")
    raw = run(tmp_path, root, "image+text")
    forced = run(tmp_path / "b", root, "image+text", ["--option", "image+text.combine=normalized"])
    assert raw[("change_object", "image+text")]["method"]["config"]["combine"] == "raw"
    assert forced[("change_object", "image+text")]["method"]["config"]["combine"] == "normalized"


def _set(row, key, value):
    row[key] = value


# each breakage of change_attribute.json: fails one clause of its check while every other clause holds
# (a list holding the two key names; an image with an id but no box; a negative width with a positive
# height and the reverse at zero and below; a corner one pixel left of or above the image; a non-empty
# string as the gallery; an id that is a blank string or a float)
ANNOTATION_BREAKAGES = {
    "bad-bbox": lambda rows: _set(rows[0]["reference"], "instance_bbox", [1, 2]),
    "no-gallery": lambda rows: rows[1].pop("gallery"),
    "image-as-list": lambda rows: _set(rows[0], "reference", ["image_id", "instance_bbox"]),
    "no-box": lambda rows: rows[0]["reference"].pop("instance_bbox"),
    "negative-width": lambda rows: _set(rows[0]["reference"], "instance_bbox", [1, 2, -3, 4]),
    "zero-height": lambda rows: _set(rows[0]["reference"], "instance_bbox", [1, 2, 3, 0]),
    "negative-height": lambda rows: _set(rows[0]["reference"], "instance_bbox", [1, 2, 3, -4]),
    "left-of-image": lambda rows: _set(rows[0]["reference"], "instance_bbox", [-1, 2, 3, 4]),
    "above-image": lambda rows: _set(rows[0]["reference"], "instance_bbox", [1, -1, 3, 4]),
    "gallery-string": lambda rows: _set(rows[1], "gallery", "abc"),
    "five-numbers": lambda rows: _set(rows[0]["reference"], "instance_bbox", [1, 2, 3, 4, 5]),
    "blank-id": lambda rows: _set(rows[0]["reference"], "image_id", "  "),
    "float-id": lambda rows: _set(rows[0]["reference"], "image_id", 2005.0),
}


@pytest.mark.parametrize("breakage, message", [
    # a missing VG image is named with its place in the layout the README asks for (VG_100K_all)
    ("missing-vg", ("image 'vg/2005#1,2,12,9' is missing", f"{Path('genecis', 'vg', 'VG_100K_all', '2005.jpg')})")),
    ("missing-coco", "image 'coco/8' is missing"),
    ("bad-bbox", "instance_bbox must be [x, y, w, h]"),
    ("no-gallery", "expected fields reference, target, gallery, condition"),
    ("image-as-list", "an attribute-task image must be {'image_id'"),
    ("no-box", "an attribute-task image must be {'image_id'"),
    ("negative-width", "instance_bbox [1, 2, -3, 4] must have a positive width and height"),
    ("zero-height", "instance_bbox [1, 2, 3, 0] must have a positive width and height"),
    ("negative-height", "instance_bbox [1, 2, 3, -4] must have a positive width and height"),
    ("left-of-image", "instance_bbox [-1, 2, 3, 4] must have a positive width and height and start inside"),
    ("above-image", "instance_bbox [1, -1, 3, 4] must have a positive width and height and start inside"),
    ("gallery-string", "'gallery' must be a list"),
    ("five-numbers", "instance_bbox must be [x, y, w, h] of finite numbers, found [1, 2, 3, 4, 5]"),
    ("blank-id", "image_id must be a Visual Genome id (an integer), found '  '"),
    ("float-id", "image_id must be a Visual Genome id (an integer), found 2005.0"),
    ("no-file", "GeneCIS template file"),
])
def test_data_check_names_what_is_broken(tmp_path, breakage, message):
    root = F.genecis(tmp_path / "genecis")
    path = root / "annotations" / "change_attribute.json"
    if breakage == "missing-vg":
        (root / "vg" / "VG_100K_2" / "2005.jpg").unlink()
    elif breakage == "missing-coco":
        (root / "coco" / "val2017" / "000000000008.jpg").unlink()
    elif breakage == "no-file":
        path.unlink()
    else:
        rows = json.loads(path.read_text())
        ANNOTATION_BREAKAGES[breakage](rows)
        path.write_text(json.dumps(rows))
    result = CliRunner().invoke(app, ["data", "check", "genecis", "--data", f"genecis={root}", "--quiet"])
    messages = message if isinstance(message, tuple) else (message,)
    assert result.exit_code == 1 and all(m in result.output for m in messages), result.output
    assert CliRunner().invoke(app, ["data", "check", "genecis", "--data",
                                    f"genecis={F.genecis(tmp_path / 'ok')}", "--quiet"]).exit_code == 0


def test_a_one_pixel_box_at_the_corner_is_accepted(tmp_path):
    # the bounds of the box check: x = y = 0 and a width and height of 1 are valid (a strict x > 0, y > 0
    # or w > 1 would refuse it)
    root = F.genecis(tmp_path / "genecis")
    path = root / "annotations" / "change_attribute.json"
    rows = json.loads(path.read_text())
    rows[0]["reference"]["instance_bbox"] = [0, 0, 1, 1]
    path.write_text(json.dumps(rows))
    result = CliRunner().invoke(app, ["data", "check", "genecis", "--data", f"genecis={root}", "--quiet"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("place", ["genecis", "."])
def test_the_template_files_are_found_beside_the_images_or_in_a_genecis_folder(tmp_path, place):
    # the official repository keeps the templates in genecis/; a user may also drop them at the root
    root = F.genecis(tmp_path / "genecis")
    (root / "annotations").rename(tmp_path / "moved")
    (root / place).mkdir(exist_ok=True)
    for path in (tmp_path / "moved").iterdir():
        path.rename(root / place / path.name)
    result = CliRunner().invoke(app, ["data", "check", "genecis", "--data", f"genecis={root}", "--quiet"])
    assert result.exit_code == 0 and "change_attribute: 3 queries" in result.output, result.output


def test_template_fields_beyond_the_four_needed_are_ignored(tmp_path):
    # the released templates may carry more keys than reference, target, gallery and condition
    root = F.genecis(tmp_path / "genecis")
    path = root / "annotations" / "change_attribute.json"
    rows = json.loads(path.read_text())
    rows[0]["template_id"] = 17
    path.write_text(json.dumps(rows))
    assert len(datasets.get("genecis")(root).load("change_attribute").queries) == 3
