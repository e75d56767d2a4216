"""`cirbench data check` names every broken variant of the official layouts; runs never drop data silently."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import colour_encoder
import real_fixtures as F
from cirbench.cli import app

colour_encoder.register()


def check(root: Path, name: str):
    result = CliRunner().invoke(app, ["data", "check", name, "--data-root", str(root.parent), "--quiet"])
    return result.exit_code, result.output


def edit_json(path: Path, change):
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def corrupt(path: Path):
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not really an image")


BREAKS = {
    "fashioniq": [
        ("missing image", lambda r: (r / "images" / "dress1.png").unlink(), "dress1"),
        ("unreadable image", lambda r: corrupt(r / "images" / "shirt2.jpg"), "shirt2"),
        ("target outside split", lambda r: edit_json(r / "captions" / "cap.dress.val.json",
                                                     lambda o: o[0].update(target="shirt0")), "not in the dress val"),
        ("malformed json", lambda r: (r / "captions" / "cap.toptee.val.json").write_text('[{"candidate": '),
         "cap.toptee.val.json: invalid JSON"),
        ("name escapes", lambda r: edit_json(r / "image_splits" / "split.dress.val.json",
                                             lambda o: o.append("../../secret")), "not a plain file name"),
        # a slash alone (no "..", no backslash): each of the three tests of a plain name must refuse by itself
        ("name in a folder", lambda r: edit_json(r / "image_splits" / "split.dress.val.json",
                                                 lambda o: o.append("sub/dress0")),
         "'sub/dress0' is not a plain file name"),
        # CIRR's split files map names to paths: a FashionIQ split file in that shape is refused, not read
        # as its keys
        ("split file of another shape", lambda r: (r / "image_splits" / "split.dress.val.json").write_text(
            json.dumps({f"dress{i}": f"./images/dress{i}.png" for i in range(4)})),
         "split.dress.val.json: expected a list of image names"),
        ("three captions", lambda r: edit_json(r / "captions" / "cap.shirt.val.json",
                                               lambda o: o[1].update(captions=["is red", "is long", "has a bow"])),
         "cap.shirt.val.json[1]: 'captions' must be a list of two strings"),
        # a row lacking one needed field, its other two present (a test of the fields as one set would let it by)
        ("one caption", lambda r: edit_json(r / "captions" / "cap.dress.val.json",
                                            lambda o: o[0].update(captions=["is red"])),
         "cap.dress.val.json[0]: 'captions' must be a list of two strings"),
        ("row without its captions", lambda r: edit_json(r / "captions" / "cap.dress.val.json",
                                                         lambda o: o[1].pop("captions")),
         "cap.dress.val.json[1]: expected fields candidate, target, captions"),
        ("caption file in neither folder", lambda r: (r / "captions" / "cap.toptee.val.json").unlink(),
         "captions/cap.toptee.val.json"),
    ],
    "cirr": [
        ("path escapes", lambda r: edit_json(r / "cirr" / "image_splits" / "split.rc2.val.json",
                                             lambda o: o.update({"evil": "../../../etc/passwd"})), "escapes"),
        ("member outside split", lambda r: edit_json(r / "cirr" / "captions" / "cap.rc2.val.json",
                                                     lambda o: o[0]["img_set"]["members"].append("test1-0-0-img0")),
         "img_set member 'test1-0-0-img0'"),
        ("row without its caption", lambda r: edit_json(r / "cirr" / "captions" / "cap.rc2.val.json",
                                                        lambda o: o[0].pop("caption")),
         "expected fields pairid, reference, caption"),
        ("missing image", lambda r: (r / "dev" / "dev-0-1-img1.png").unlink(), "dev-0-1-img1"),
        ("unreadable image", lambda r: corrupt(r / "dev" / "dev-1-0-img0.png"), "dev-1-0-img0"),
    ],
    "circo": [
        ("gt outside gallery", lambda r: edit_json(r / "annotations" / "val.json",
                                                   lambda o: o[0].update(gt_img_ids=[5, 99, 98, 97, 96])),
         "ground truth ['99', '98', '97'] not in the unlabeled"),  # the first three of four named
        ("missing image", lambda r: (r / "COCO2017_unlabeled" / "unlabeled2017" / "000000000006.jpg").unlink(),
         "'6' is missing"),
        ("malformed json", lambda r: (r / "annotations" / "val.json").write_text("{"), "val.json: invalid JSON"),
        ("row without its caption", lambda r: edit_json(r / "annotations" / "val.json",
                                                        lambda o: o[0].pop("relative_caption")),
         "expected fields id, reference_img_id, relative_caption"),
        ("target not the first ground truth", lambda r: edit_json(r / "annotations" / "val.json",
                                                                  lambda o: o[0].update(target_img_id=7, gt_img_ids=[5, 7])),
         "target_img_id must be gt_img_ids[0]"),  # "7" sorts after "5": an order test would let it pass
        ("target not the first ground truth, sorting before it", lambda r: edit_json(
            r / "annotations" / "val.json", lambda o: o[0].update(target_img_id=3, gt_img_ids=[5, 3])),
         "target_img_id must be gt_img_ids[0]"),
        ("image id not a number", lambda r: edit_json(r / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
                                                      lambda o: o["images"][0].update(id="1")), "images[0]"),
        ("image list not a list", lambda r: (r / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json")
         .write_text('{"images": {"1": "000000000001.jpg"}}'), "expected {'images': [...]}"),
    ],
    "imagenet-r": [
        ("bad list line", lambda r: (r / "imgnet_targets.txt").write_text("imgnet/a.jpg\n"), "imgnet_targets.txt:1"),
        ("path escapes", lambda r: (r / "imgnet_targets.txt").write_text("imgnet/../../x.jpg 0\n"), "escapes"),
        ("missing image", lambda r: (r / "imagenet-r" / "n001" / "toy_0.jpg").unlink(), "toy_0.jpg"),
    ],
}
BUILD = {"fashioniq": F.fashioniq, "cirr": F.cirr, "circo": F.circo, "imagenet-r": F.imagenet_r}


@pytest.mark.parametrize("name, label, breaker, expected",
                         [(n, label, b, e) for n, cases in BREAKS.items() for label, b, e in cases],
                         ids=[f"{n}-{label}" for n, cases in BREAKS.items() for label, _, _ in cases])
def test_broken_variant_is_reported_by_name(tmp_path, name, label, breaker, expected):
    root = BUILD[name](tmp_path / name)
    code, out = check(root, name)
    assert code == 0 and "OK" in out, out
    breaker(root)
    code, out = check(root, name)
    assert code == 1 and expected in out and "problem:" in out, out


def test_missing_data_root_lists_what_was_expected(tmp_path):
    result = CliRunner().invoke(app, ["run", "--dataset", "cirr", "--data-root", str(tmp_path), "--encoder",
                                      "colour-test"])
    assert result.exit_code == 2
    assert "cap.rc2.val.json" in result.output and "--data-root" in result.output


def test_unreadable_image_stops_the_run_or_is_skipped_and_recorded(tmp_path):
    root = F.cirr(tmp_path / "cirr")
    corrupt(root / "dev" / "dev-0-1-img1.png")
    args = ["run", "--dataset", "cirr", "--data-root", str(tmp_path), "--encoder", "colour-test", "-m",
            "image-only", "--workers", "0", "--quiet", "--results-dir", str(tmp_path / "r"),
            "--cache-dir", str(tmp_path / "c")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "dev-0-1-img1.png" in result.output and "--skip-bad-images" in result.output
    assert not list((tmp_path / "r").rglob("*.json"))
    result = CliRunner().invoke(app, args + ["--skip-bad-images", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["results"][0]
    skipped = record["run"]["skipped"]
    assert skipped["unreadable_images"] == ["dev-0-1-img1"] and skipped["dropped_gallery_items"] == 1
    assert record["dataset"]["n_gallery"] == 5
    # the queries keep their subsets minus the unreadable image; none loses its reference or target
    assert skipped["dropped_queries"] == [] and record["dataset"]["n_queries"] == 2


def test_data_root_holds_every_dataset_by_name(tmp_path, monkeypatch):
    for name, build in BUILD.items():
        build(tmp_path / name)
    monkeypatch.setenv("CIRBENCH_DATA_ROOT", str(tmp_path))
    for name in BUILD:
        result = CliRunner().invoke(app, ["data", "check", name, "--quiet"])
        assert result.exit_code == 0, result.output
