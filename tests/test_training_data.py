"""Where `cirbench train` finds its data: folders and CC3M-style manifests."""

import pytest

from cirbench.errors import DataError
from cirbench.training.sources import unlabeled_images
from helpers import render


def test_folder_and_manifest(tmp_path):
    a = render(tmp_path / "imgs" / "a.png", "circle", "red")
    b = render(tmp_path / "imgs" / "sub" / "b.png", "square", "blue")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    assert unlabeled_images(tmp_path / "imgs") == sorted([a, b])
    manifest = tmp_path / "cc3m.tsv"
    manifest.write_text("filepath\ttitle\nimgs/a.png\ta red circle\n" f"{b}\ta blue square\n\n")
    assert unlabeled_images(manifest) == [tmp_path / "imgs" / "a.png", b]


def test_empty_or_missing_sources_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        unlabeled_images(tmp_path / "empty")
    with pytest.raises(DataError, match="no such folder or manifest"):
        unlabeled_images(tmp_path / "missing.tsv")
    (tmp_path / "header_only.tsv").write_text("filepath\ttitle\n")
    with pytest.raises(DataError, match="lists no images"):
        unlabeled_images(tmp_path / "header_only.tsv")


def test_a_bad_training_image_is_named_with_its_own_line(tmp_path):
    # train.jsonl with a blank line: the bad row is line 3 of the file, the 2nd triplet (a count of
    # triplets would name line 2)
    import json

    from cirbench.contracts.registry import datasets

    root = tmp_path / "own"
    root.mkdir()
    good = {"reference": "gallery/a.png", "text": "red", "target": "gallery/b.png"}
    for bad, message in (({**good, "reference": "../a.png"}, "train.jsonl:3: path '../a.png' escapes"),
                         ({**good, "target": 7}, "train.jsonl:3: image paths must be non-empty strings")):
        (root / "train.jsonl").write_text("\n".join([json.dumps(good), "", json.dumps(bad)]) + "\n")
        with pytest.raises(DataError, match=message):
            datasets.get("folder")(root).train_images()
    (root / "train.jsonl").write_text("\n".join([json.dumps(good), "", json.dumps(good)]) + "\n")
    assert datasets.get("folder")(root).train_images() == {"gallery/a.png": root / "gallery" / "a.png",
                                                           "gallery/b.png": root / "gallery" / "b.png"}
    assert len(datasets.get("folder")(root).train_triplets()) == 2
