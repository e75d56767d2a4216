"""COCO object composition: seeded, recorded query preparation and its evaluation."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import colour_encoder
import real_fixtures as F
from cirbench.cli import app

colour_encoder.register()
pytest.importorskip("pycocotools")


def prepare(tmp_path, seed=0):
    result = CliRunner().invoke(app, ["data", "prepare", "coco", "--data-root", str(tmp_path), "--set",
                                      f"seed={seed}", "--quiet"])
    assert result.exit_code == 0, result.output
    return result.output


def test_prepare_masks_crops_and_records(tmp_path):
    root = F.coco(tmp_path / "coco")
    out = prepare(tmp_path)
    assert "3 queries from 5 images (seed 0)" in out
    meta = json.loads((root / "cirbench_queries" / "seed-0" / "queries.json").read_text())
    assert meta["skipped"] == {"no_candidate": 1, "no_other_class": 1}
    rows = {r["image_id"]: r for r in meta["queries_list"]}
    assert set(rows) == {1, 2, 5}
    assert rows[1]["query_class"] == "dog" and rows[1]["other_classes"] == ["cat"]
    assert rows[2]["query_class"] == "cat" and rows[2]["other_classes"] == ["dog"]
    crop = np.asarray(Image.open(root / rows[1]["query_image"]))
    assert crop.shape[:2] == (10, 10)
    assert crop[1, 1].tolist()[2] > 200 and crop[1, 1].tolist()[0] < 60  # inside the triangle: blue
    assert crop[9, 9].tolist() == [255, 255, 255]  # outside the mask, inside the box: whited out


def test_seed_decides_the_object_and_is_reproducible(tmp_path):
    root = F.coco(tmp_path / "coco")
    prepare(tmp_path, 0)
    first = (root / "cirbench_queries" / "seed-0" / "queries.json").read_text()
    prepare(tmp_path, 0)
    assert (root / "cirbench_queries" / "seed-0" / "queries.json").read_text() == first
    chosen = set()
    for seed in range(8):
        prepare(tmp_path, seed)
        meta = json.loads((root / "cirbench_queries" / f"seed-{seed}" / "queries.json").read_text())
        chosen.add(next(r["query_class"] for r in meta["queries_list"] if r["image_id"] == 5))
    assert chosen == {"dog", "bird"}


def test_run_on_prepared_queries(tmp_path):
    F.coco(tmp_path / "coco")
    args = ["run", "--dataset", "coco", "--data-root", str(tmp_path), "--encoder", "colour-test", "-m",
            "image-only,text-only", "--workers", "0", "--json", "--quiet", "--results-dir", str(tmp_path / "r"),
            "--cache-dir", str(tmp_path / "c")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "cirbench data prepare coco" in result.output
    prepare(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    records = {r["method"]["name"]: r for r in json.loads(result.stdout)["results"]}
    image = records["image-only"]
    # Worked out from mean colours (R, G, B out of 255) of the full gallery images:
    #   img1 (224.8, 13, 43.3), img2 (51.7, 255, 13), img5 (90.9, 129.6, 129.6).
    # q1: the blue triangle with white corners, mean about (122, 122, 255): cos img5 .95 > img1 .57 > img2 .51
    #     -> target rank 2.   q2: the flat yellow square: cos img2 .83 > img5 .79 > img1 .74 -> rank 1.
    # q5: the seed draws the blue "dog" (cos img5 .69 first -> rank 1) or the green "bird"
    #     (cos img2 .99 > img5 .69 -> rank 2).
    meta = json.loads((tmp_path / "coco" / "cirbench_queries" / "seed-0" / "queries.json").read_text())
    drawn = next(r["query_class"] for r in meta["queries_list"] if r["image_id"] == 5)
    ranks = [2, 1, 1] if drawn == "dog" else [2, 1, 2]
    assert image["metrics"]["R@1"] == pytest.approx(100 * ranks.count(1) / 3)
    assert image["metrics"]["R@5"] == pytest.approx(100.0)
    assert image["metrics"]["mean_rank"] == pytest.approx(sum(ranks) / 3)
    assert image["metrics"]["median_rank"] == sorted(ranks)[1]
    assert image["dataset"]["seed"] == 0 and image["dataset"]["n_queries"] == 3
    assert records["text-only"]["dataset"]["prompts"]["pseudo"] == "a photo of * and {text}"


def test_missing_pycocotools_names_the_extra(tmp_path, monkeypatch):
    import builtins

    F.coco(tmp_path / "coco")
    real_import = builtins.__import__

    def no_pycocotools(name, *args, **kwargs):
        if name.startswith("pycocotools"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pycocotools)
    result = CliRunner().invoke(app, ["data", "prepare", "coco", "--data-root", str(tmp_path), "--quiet"])
    assert result.exit_code == 2 and 'pip install -e ".[coco]"' in result.output
