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


# -- FREEDOM, against a few lines written from the official code ------------------------------------------

def official_freedom(image, database, corpus, names, text_features, domain, kappa, ni, miu):
    """run_retrieval.py's calculate_rankings ("freedom") and utils.py, on normalised torch features; ranks."""
    import torch

    sim_img = image @ database.t()
    _, ranks_img = torch.topk(sim_img, kappa, dim=1, largest=True, sorted=True)
    neighbors = database[ranks_img]
    if torch.min(torch.max(sim_img, 1)[0]).item() < 0.98:
        neighbors = torch.cat((image.unsqueeze(1), neighbors[:, 0:-1, :]), 1)
    top = torch.topk(neighbors @ corpus.t(), ni, dim=2, largest=True, sorted=True)[1].numpy()
    labels, weights = [], []
    for query in top:
        counts = {}
        for proxy in query:
            for i in proxy:
                counts[names[i]] = counts.get(names[i], 0) + 1
        common = sorted(counts.keys(), key=lambda x: counts[x], reverse=True)[:miu]
        values = [counts[k] for k in common]
        labels.append(common)
        weights.append([v / max(max(values), 0.0001) for v in values])
    width = max(len(x) for x in labels)
    texts = [c + " " + domain for row in labels for c in row + [""] * (width - len(row))]
    w = torch.tensor([x for row in weights for x in row + [0] * (width - len(row))]).view(-1, 1)
    fused = (text_features(texts) * w).reshape(-1, width, image.shape[1]).sum(dim=1)
    return torch.argsort(fused @ database.t(), descending=True)


FREEDOM_NICO_Q = [("nico/dim/cat/q1.png", "dim", "cat", "green"), ("nico/dim/dog/q2.png", "dim", "dog", "yellow")]
FREEDOM_NICO_DB = [("nico/dim/cat/d1.png", "dim", "cat", "white"), ("nico/rock/cat/r1.png", "rock", "cat", "red"),
                   ("nico/rock/dog/r2.png", "rock", "dog", "gray"), ("nico/rock/cat/r3.png", "rock", "cat", "blue")]


@pytest.mark.parametrize("name", ["ltll", "nico"])
def test_freedom_ranks_as_the_official_code(tmp_path, tiny_dir, tiny_encoder, name):
    """LTLL: each query is in the database (no self proxy); NICO++ here: none is (its best similarity
    is below 0.98), so the query itself is the first proxy."""
    import cirbench
    import torch
    from cirbench.protocol.images import load_image
    from cirbench.storage import results
    from helpers import result_file

    if name == "ltll":
        rows, queries, split, domain = LTLL, LTLL[:2], "ltll:Today-Archive", "Archive"
        root = layout(tmp_path / "ltll", LTLL, {"full_files.csv": LTLL})
    else:
        rows, queries, split, domain = FREEDOM_NICO_DB, FREEDOM_NICO_Q, "nico:dimlight-rock", "rock"
        root = layout(tmp_path / "nico", FREEDOM_NICO_Q + FREEDOM_NICO_DB,
                      {"query_files.csv": FREEDOM_NICO_Q, "database_files.csv": FREEDOM_NICO_DB})
    corpus = tmp_path / "names.csv"
    names = ["red car", "blue sky", "tower", "bridge", "yellow flower", "temple", "sea", "statue"]
    corpus.write_text("".join(f"{n},x\n" for n in names))
    ev = cirbench.evaluate(methods=["freedom"], datasets=[split], data={name: str(root)},
                           encoder=f"local-dir:{tiny_dir}", workers=0, cache_dir=tmp_path / "c",
                           results_dir=tmp_path / "r", options=["freedom.corpus=" + str(corpus), "freedom.kappa=3",
                                                               "freedom.ni=3", "freedom.miu=2"])
    (cell,) = ev.cells
    assert cell.status == "computed", cell.error
    out = results.load_outcomes(results.read(result_file(tmp_path / "r", "freedom")))

    def feats(paths):
        with torch.no_grad():
            pixels = torch.stack([tiny_encoder.preprocess(load_image(root / p.split("/", 1)[1], keep_mode=True))
                                  for p in paths])
            return torch.nn.functional.normalize(tiny_encoder.encode_images(pixels), dim=-1)

    def text_features(texts):
        with torch.no_grad():
            return torch.nn.functional.normalize(tiny_encoder.encode_texts(texts), dim=-1)

    gallery = [r[0] for r in rows]
    image, database = feats([q[0] for q in queries]), feats(gallery)
    assert (float((image @ database.T).max(dim=1).values.min()) < 0.98) == (name == "nico")
    # kappa 3, ni 3, miu 2: where the self proxy changes the NICO++ ranking (searched on this tiny CLIP)
    want = official_freedom(image, database, text_features(names), names, text_features, domain, 3, 3, 2)
    got = out.views["gallery"][0][:, :len(gallery)]
    assert got.tolist() == want.tolist()
    assert cell.record.method.config["corpus_names"] == 8 and cell.record.method.setting == "kappa=3, miu=2, ni=3"


def test_freedom_without_its_class_list_says_so_and_all_skips_it(tmp_path):
    root = layout(tmp_path / "ltll", LTLL, {"full_files.csv": LTLL})
    code, out = invoke("run", "-m", "freedom", "--dataset", "ltll:Today-Archive", "--data", f"ltll={root}",
                       "--encoder", "colour-test", "--quiet", "--results-dir", tmp_path / "r", "--cache-dir",
                       tmp_path / "c")
    assert code == 2 and "freedom needs the Open Images class-name list" in out and "cirbench data get ltll" in out
    # the default place: the dataset folder, where data get puts it
    (root / "open_image_v7_class_names.csv").write_text("red car,x\nsea,y\n")
    code, out = invoke("run", "-m", "freedom", "--dataset", "ltll:Today-Archive", "--data", f"ltll={root}",
                       "--encoder", "colour-test", "--quiet", "--results-dir", tmp_path / "r", "--cache-dir",
                       tmp_path / "c", "--option", "freedom.kappa=2")
    assert code == 0, out


def test_freedoms_most_frequent_names_by_hand():
    """Counts over the proxies: a 2, b 3, c 1 -> b then a (miu 2), weights 3/3 and 2/3; equal counts keep
    the order first seen (x before y); an empty name counts 0 whatever its occurrences."""
    from cirbench.methods.freedom import most_frequent

    assert most_frequent([["a", "b"], ["b", "c"], ["b", "a"]], 2) == (["b", "a"], [1.0, 2 / 3])
    assert most_frequent([["x", "y"], ["y", "x"]], 3) == (["x", "y"], [1.0, 1.0])
    assert most_frequent([["", "z"], ["", "z"]], 2) == (["z", ""], [1.0, 0.0])


# -- ImageNet-R under FREEDOM's protocol (--set protocol=freedom) -------------------------------------------

def test_imagenet_r_freedom_protocol_by_hand(tmp_path):
    """imgnet_targets.txt alone: its 8 lines are the queries and the database. photo-cartoon: the three real
    images query (the query in its own database). Red queries (n001): the red cartoon, then the two red
    reals (ties, list order), then the yellow cartoon: positives at 0-based 0 and 3:
    AP = ((1 + 1) + (1/3 + 2/4)) / 2 / (2 + 1e-5). The blue query (n002): the blue cartoon listed before it:
    AP = (1 + 1) / 2 / (1 + 1e-5)."""
    import real_fixtures as F

    root = F.imagenet_r(tmp_path / "imagenet-r")
    ds = datasets.get("imagenet-r")(root, {"protocol": "freedom"})
    assert len(ds.splits) == 20 and ds.splits[0] == "photo-cartoon" and ds.result_name == "imagenet-r-freedom"
    split = ds.load("photo-cartoon")
    assert [q.text for q in split.queries] == ["cartoon"] * 3 and len(split.gallery) == 8
    assert split.queries[2].reference in split.gallery and not split.remove_reference
    assert split.info["classes"].startswith("wnid")
    cells = cirbench_evaluate(tmp_path, root, "imagenet-r:photo-cartoon", {"protocol": "freedom"})
    e = 1e-5
    red, blue = ((1 + 1) + (1 / 3 + 2 / 4)) / 2 / (2 + e), (1 + 1) / 2 / (1 + e)
    assert cells[0].record.metrics["mAP"] == pytest.approx(100 * (2 * red + blue) / 3)
    assert cells[0].record.dataset.result_name == "imagenet-r-freedom"
    # cartoon-photo: the cartoons query; n001's positives are its two real images
    assert ds.load("cartoon-photo").queries[0].targets == ("imgnet/real/n001/ILSVRC2012_val_00000001.JPEG",
                                                           "imgnet/real/n001/ILSVRC2012_val_00000002.JPEG")
    # label_names.csv names the classes, as FREEDOM's make_csv: two wnids of one name are one class
    (root / "label_names.csv").write_text("n001,dog\nn002,dog\n")
    merged = datasets.get("imagenet-r")(root, {"protocol": "freedom"}).load("photo-cartoon")
    assert len(merged.queries[2].targets) == 3 and merged.info["classes"] == "label_names.csv"
    (root / "label_names.csv").write_text("n001,dog\n")
    with pytest.raises(DataError, match="has no name for 'n002'"):
        datasets.get("imagenet-r")(root, {"protocol": "freedom"}).load("photo-cartoon")
    with pytest.raises(UsageError, match="protocol=freedom reads imgnet_targets.txt alone"):
        datasets.get("imagenet-r")(root, {"protocol": "freedom", "metric": "hit"})
    with pytest.raises(UsageError, match="'pic2word' .* or 'freedom'"):
        datasets.get("imagenet-r")(root, {"protocol": "magic"})


def cirbench_evaluate(tmp_path, root, dataset, settings):
    import cirbench

    name = dataset.split(":")[0]
    return cirbench.evaluate(methods=["image-only"], datasets=[dataset], data={name: str(root)},
                             settings=settings, encoder="colour-test", workers=0,
                             cache_dir=tmp_path / "cache", results_dir=tmp_path / "r").cells
