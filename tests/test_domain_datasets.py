"""The domain-conversion family (issue 35) in its official file layouts, FREEDOM's protocol worked by
hand with the colour encoder (image feature = the mean colour): LTLL's one list serving as queries and
database, NICO++'s two lists and renamed domains, and the files' errors named by line."""

from __future__ import annotations

import pytest
from PIL import Image

import colour_encoder
from cirbench.contracts.registry import datasets
from cirbench.errors import DataError, UsageError
from helpers import FLAT, invoke

colour_encoder.register()

# LTLL: (listed path, domain, class, colour); the gallery is the file's order
LTLL = [("ltll/New/images/A/n_a.png", "New", "A", "red"), ("ltll/New/images/B/n_b.png", "New", "B", "blue"),
        ("ltll/Old/images/A/o_a1.png", "Old", "A", "red"), ("ltll/Old/images/A/o_a2.png", "Old", "A", "yellow"),
        ("ltll/Old/images/B/o_b.png", "Old", "B", "blue")]


def layout(root, rows, files):
    for path, _d, _c, colour in rows:
        target = root / path.split("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 8), FLAT[colour]).save(target)
    for name, chosen in files.items():
        (root / name).write_text("".join(f"{p} {d} {c}\n" for p, d, c, _ in chosen))
    return root


def test_ltll_today_to_archive_by_hand(tmp_path):
    """Today-Archive: the New images query, the whole list is the database (each query in it).
    n_a (red): red n_a and o_a1 tie at 1 (gallery order), then yellow o_a2, then the blues: positives (Old,
    A) at 0-based ranks 1 and 2: AP = ((0/1 + 1/2) + (1/2 + 2/3)) / 2 / (2 + 1e-5).
    n_b (blue): n_b, o_b (tie), then yellow (cos .107), then the reds (.104): the positive o_b at rank 1
    (0-based): AP = (0/1 + 1/2) / 2 / (1 + 1e-5). R@5 and P@5: every positive is in the top 5."""
    root = layout(tmp_path / "ltll", LTLL, {"full_files.csv": LTLL})
    ds = datasets.get("ltll")(root)
    assert ds.splits == ("Today-Archive", "Archive-Today")
    split = ds.load("Today-Archive")
    assert [q.reference for q in split.queries] == [LTLL[0][0], LTLL[1][0]] and split.gallery == [r[0] for r in LTLL]
    assert [q.text for q in split.queries] == ["Archive", "Archive"] and not split.remove_reference
    assert split.queries[0].targets == (LTLL[2][0], LTLL[3][0]) and split.queries[1].targets == (LTLL[4][0],)
    (cell,) = evaluate_dataset(tmp_path, root, "ltll:Today-Archive", ["image-only"])
    ap1 = ((0 / 1 + 1 / 2) + (1 / 2 + 2 / 3)) / 2 / (2 + 1e-5)
    ap2 = (0 / 1 + 1 / 2) / 2 / (1 + 1e-5)
    m = cell.record.metrics
    assert m["mAP"] == pytest.approx(100 * (ap1 + ap2) / 2)
    assert m["R@5"] == pytest.approx(100 * (2 / (2 + 1e-5) + 1 / (1 + 1e-5)) / 2) == m["P@5"]
    assert cell.record.main_metrics == ["mAP", "R@5", "R@10"]


def evaluate_dataset(tmp_path, root, dataset, methods):
    import cirbench

    name = dataset.split(":")[0]
    return cirbench.evaluate(methods=methods, datasets=[dataset], data={name: str(root)}, encoder="colour-test",
                             workers=0, cache_dir=tmp_path / "cache", results_dir=None).cells


NICO_Q = [("nico/dim/cat/d1.png", "dim", "cat", "gray"), ("nico/rock/cat/r1.png", "rock", "cat", "red")]
NICO_DB = [("nico/dim/cat/d2.png", "dim", "cat", "white"), ("nico/rock/cat/r2.png", "rock", "cat", "red"),
           ("nico/rock/dog/r3.png", "rock", "dog", "gray")]


def test_nico_renames_its_domains_and_reads_two_lists(tmp_path):
    root = layout(tmp_path / "nico", NICO_Q + NICO_DB, {"query_files.csv": NICO_Q, "database_files.csv": NICO_DB})
    ds = datasets.get("nico")(root)
    assert "dimlight-rock" in ds.splits and "dim-rock" not in ds.splits and len(ds.splits) == 30
    split = ds.load("dimlight-rock")
    assert [q.reference for q in split.queries] == [NICO_Q[0][0]] and split.queries[0].text == "rock"
    assert split.queries[0].targets == (NICO_DB[1][0],) and split.gallery == [r[0] for r in NICO_DB]
    assert split.images[NICO_Q[0][0]] == root / "dim" / "cat" / "d1.png"
    # a query whose class has no image of the target domain: no positive, scored 0 and counted
    assert ds.load("rock-dimlight").queries[0].targets == (NICO_DB[0][0],)
    with pytest.raises(UsageError, match="nico has no split 'dim-rock'"):
        ds.load("dim-rock")
    (cell,) = evaluate_dataset(tmp_path, root, "nico:dimlight-rock", ["image-only"])
    # gray d1: white d2 and gray r3 (the same direction) come first, red r2 third: AP (0/2 + 1/3) / 2
    assert cell.record.metrics["mAP"] == pytest.approx(100 * (0 / 2 + 1 / 3) / 2 / (1 + 1e-5))


def test_a_malformed_line_or_an_empty_list_is_named(tmp_path):
    root = layout(tmp_path / "ltll", LTLL, {"full_files.csv": LTLL})
    (root / "full_files.csv").write_text("ltll/New/images/A/n_a.png New\n")
    with pytest.raises(DataError, match=r"full_files.csv:1: expected 'path domain class'"):
        datasets.get("ltll")(root).load("Today-Archive")
    (root / "full_files.csv").write_text("\n")
    with pytest.raises(DataError, match="full_files.csv: lists no image"):
        datasets.get("ltll")(root).load("Today-Archive")
    (root / "full_files.csv").write_text("ltll/../../outside.png New A\n")
    code, out = invoke("data", "check", "ltll", "--data", f"ltll={root}", "--quiet")
    assert code == 1 and "escapes the dataset folder" in out
