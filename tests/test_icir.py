"""i-CIR and BASIC (issue 35): the dataset in its released layout, its per-instance metrics worked by
hand, the product baseline's per-dataset clamp, and BASIC against a few lines written from the official
billpsomas/icir code (utils_retrieval.calculate_rankings, utils_features.contextualize, utils.compute_ap)
on a tiny random CLIP."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

import colour_encoder
from cirbench.contracts.registry import datasets
from cirbench.errors import DataError
from helpers import FLAT, invoke, render, result_file

colour_encoder.register()

# (listed path, text, instance, colour); the databases in file order
DB = [("icir/database/lamp/a.png", "at night", "lamp", "red"), ("icir/database/lamp/b.png", "in snow", "lamp", "blue"),
      ("icir/database/lamp/c.png", "at night", "lamp", "yellow"),
      ("icir/database/tower/d.png", "as a sketch", "tower", "green"),
      ("icir/database/tower/e.png", "hn", "tower", "white")]
Q = [("icir/query/lamp/q1.png", "at night", "lamp", "red"), ("icir/query/lamp/q2.png", "in snow", "lamp", "red"),
     ("icir/query/tower/q3.png", "as a sketch", "tower", "white")]


def icir_tree(root, db=DB, queries=Q):
    for path, _t, _i, colour in db + queries:
        target = root / path.split("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 8), FLAT[colour]).save(target)
    (root / "database_files.csv").write_text("".join(f"{p},{t},{i}\n" for p, t, i, _ in db))
    (root / "query_files.csv").write_text("".join(f"{p},{t},{i}\n" for p, t, i, _ in queries))
    return root


def evaluate(tmp_path, root, methods, encoder="colour-test", options=()):
    import cirbench

    return cirbench.evaluate(methods=methods, datasets=["icir"], data={"icir": str(root)}, encoder=encoder,
                             workers=0, cache_dir=tmp_path / "cache", results_dir=tmp_path / "r",
                             options=list(options)).cells


def test_icir_per_instance_databases_and_metrics_by_hand(tmp_path):
    """image-only with the colour encoder. lamp's database is a, b, c; tower's d, e.
    q1 (red, "at night"): a (red) 1st, c (yellow) 2nd, b (blue) 3rd; positives a, c at 0-based 0 and 1:
    AP = (1 + 1) / 2 x 2 / (2 + 1e-5) ~ 1. q2 (red, "in snow"): its positive b is 3rd (rank 2):
    AP = (0/2 + 1/3) / 2 / (1 + 1e-5) = 1/6. q3 (white, "as a sketch"): e (white) before d (green): its
    positive d at rank 1: AP = (0/1 + 1/2) / 2 = 1/4. mAP = (1 + 1/6 + 1/4) / 3; mmAP = ((1 + 1/6) / 2 +
    1/4) / 2 -- lamp's two queries weigh as much as tower's one --; minmAP = (1/6 + 1/4) / 2."""
    root = icir_tree(tmp_path / "icir")
    split = datasets.get("icir")(root).load("test")
    assert split.scope == "subset" and split.group_by == "instance" and not split.remove_reference
    assert split.queries[0].subset == tuple(r[0] for r in DB[:3]) and split.queries[2].subset == (DB[3][0], DB[4][0])
    assert split.queries[0].targets == (DB[0][0], DB[2][0]) and split.queries[1].targets == (DB[1][0],)
    assert split.images[DB[0][0]] == root / "database" / "lamp" / "a.png"
    (cell,) = evaluate(tmp_path, root, ["image-only"])
    e = 1e-5
    ap = [2 / (2 + e), (1 / 3) / 2 / (1 + e), (1 / 2) / 2 / (1 + e)]
    m = cell.record.metrics
    assert m["mAP"] == pytest.approx(100 * sum(ap) / 3)
    assert m["mmAP"] == pytest.approx(100 * ((ap[0] + ap[1]) / 2 + ap[2]) / 2)
    assert m["minmAP"] == pytest.approx(100 * (ap[1] + ap[2]) / 2)
    assert cell.record.main_metrics == ["mAP", "mmAP", "minmAP"]
    # the per-query values add up to the numbers (tables and checks read them) and get no interval
    from cirbench.analysis import stats
    from cirbench.storage import results

    out = results.load_outcomes(results.read(result_file(tmp_path / "r", "image-only")))
    values, agg = out.values["mmAP"]
    assert agg == "grouped_percent" and 100 * np.mean(values) == pytest.approx(m["mmAP"])
    assert all(v != v for v in stats.interval(values, agg))
    assert out.views["subset"][0][2].tolist()[:2] == [4, 3]  # q3 ranks e, then d (gallery positions)


def test_a_query_without_positive_counts_zero_and_ties_keep_the_database_order(tmp_path):
    """q ("on fire") has no positive in lamp's database: AP 0, counted. The two reds tie for q1: a listed
    first stays first (the official argsort is unstable; cirbench keeps the file order)."""
    db = [("icir/database/lamp/b.png", "other", "lamp", "red"), ("icir/database/lamp/a.png", "at night", "lamp", "red")]
    queries = [("icir/query/lamp/q1.png", "at night", "lamp", "red"), ("icir/query/lamp/q9.png", "on fire", "lamp", "red")]
    (cell,) = evaluate(tmp_path, icir_tree(tmp_path / "icir", db, queries), ["image-only"])
    first = (0 / 1 + 1 / 2) / 2 / (1 + 1e-5)  # the positive a behind b
    assert cell.record.metrics["mAP"] == pytest.approx(100 * first / 2)
    assert cell.record.metrics["minmAP"] == pytest.approx(0.0)


def test_icir_file_errors_are_named_by_line(tmp_path):
    root = icir_tree(tmp_path / "icir")
    (root / "query_files.csv").write_text("icir/query/lamp/q1.png,at night\n")
    with pytest.raises(DataError, match=r"query_files.csv:1: expected 'image_path,text,instance'"):
        datasets.get("icir")(root).load("test")
    (root / "query_files.csv").write_text("icir/query/lamp/q1.png,at night,castle\n")
    with pytest.raises(DataError, match=r"query_files.csv:1: instance 'castle' has no database line"):
        datasets.get("icir")(root).load("test")
    # the official loader reads the first three comma-separated fields: a fourth is dropped (counted), and
    # a text with a comma shifts its rest into the instance (here one with no database: named)
    (root / "query_files.csv").write_text("icir/query/lamp/q1.png,at night,lamp,extra\n")
    split = datasets.get("icir")(root).load("test")
    assert split.queries[0].text == "at night" and split.queries[0].fields["instance"] == "lamp"
    assert split.info["lines_cut_at_a_comma"] == 1
    (root / "query_files.csv").write_text("icir/query/lamp/q1.png,at night, really,lamp\n")
    with pytest.raises(DataError, match=r"instance ' really' has no database line"):
        datasets.get("icir")(root).load("test")


def test_a_database_image_listed_twice_is_one_candidate_and_warned(tmp_path):
    db = DB + [("icir/database/lamp/b.png", "at night", "lamp", "blue")]
    with pytest.warns(UserWarning, match="1 line"):
        split = datasets.get("icir")(icir_tree(tmp_path / "icir", db)).load("test")
    assert split.queries[0].targets == (DB[0][0], DB[1][0], DB[2][0]) and len(split.queries[0].subset) == 3
    assert split.info["database_lines_repeating_an_image"] == 1


# -- the product baseline ----------------------------------------------------------------------------------

def test_product_clamps_on_icir_only(tmp_path, tiny_dir, tiny_encoder):
    """On a tiny random CLIP "a red dog" is negatively similar to every image: i-CIR's product clamps it to
    0 (every candidate ties, the database order stays) and FREEDOM's ranks by the negative products; the two
    orders differ here, so the rule is visible."""
    import torch

    root = tmp_path / "icir"
    db = [(f"icir/database/lamp/{i}.png", "at night" if i % 3 == 0 else "hn", "lamp", None) for i in range(8)]
    queries = [("icir/query/lamp/q0.png", "at night", "lamp", None), ("icir/query/lamp/q1.png", "a red dog", "lamp", None)]
    shapes, colours = ("circle", "square", "triangle"), ("red", "blue", "green", "yellow", "purple", "orange")
    for i, (path, *_rest) in enumerate(db + queries):
        render(root / path.split("/", 1)[1], shapes[i % 3], colours[i % 6], offset=i % 4)
    (root / "database_files.csv").write_text("".join(f"{p},{t},{n}\n" for p, t, n, _ in db))
    (root / "query_files.csv").write_text("".join(f"{p},{t},{n}\n" for p, t, n, _ in queries))
    runs = {}
    for clamp in ("split", "no"):
        tmp = tmp_path / clamp
        (cell,) = evaluate(tmp, root, ["product"], encoder=f"local-dir:{tiny_dir}", options=[f"product.clamp={clamp}"])
        assert cell.status == "computed", cell.error
        from cirbench.storage import results

        out = results.load_outcomes(results.read(result_file(tmp / "r", "product")))
        runs[clamp] = out.views["subset"][0].tolist()
        assert cell.record.method.config["clamp"] is (clamp == "split")
    feats = tiny_features(tiny_encoder, root, [p for p, *_ in queries + db])
    texts = torch.nn.functional.normalize(tiny_encoder.encode_texts(["at night", "a red dog"]).detach(), dim=-1)
    image, database = feats[:2], feats[2:]
    si, st = image @ database.T, texts @ database.T
    assert bool((si < 0).any() or (st < 0).any())
    official_icir = torch.argsort(torch.clamp(si, min=0) * torch.clamp(st, min=0), descending=True, stable=True)
    official_freedom = torch.argsort(si * st, descending=True, stable=True)
    assert runs["split"] == official_icir.tolist() and runs["no"] == official_freedom.tolist()
    assert runs["split"] != runs["no"]


def tiny_features(encoder, root, paths):
    import torch

    from cirbench.protocol.images import load_image

    with torch.no_grad():
        pixels = torch.stack([encoder.preprocess(load_image(root / p.split("/", 1)[1], keep_mode=True)) for p in paths])
        return torch.nn.functional.normalize(encoder.encode_images(pixels), dim=-1)


# -- BASIC against the official code -----------------------------------------------------------------------

def official_basic(image_features, text_features, database_features, pos, neg, laion_mean, synthetic,
                   expansion=True, aa=0.2, nc=250, lam=0.1):
    """utils_retrieval.calculate_rankings, method "basic" (preset), as written there."""
    import torch

    image_features = image_features / image_features.norm(dim=1, keepdim=True)
    text_features = text_features / text_features.norm(dim=1, keepdim=True)
    database_features = database_features / database_features.norm(dim=1, keepdim=True)
    text_corpus_pos = pos / pos.norm(dim=1, keepdim=True)
    text_corpus_neg = neg / neg.norm(dim=1, keepdim=True)
    mean_img = database_features.mean(0, keepdim=True)
    mean_txt = text_corpus_pos.mean(0, keepdim=True)
    if laion_mean is not None:
        mean_img = laion_mean
    centered_database_features = database_features - mean_img
    centered_image_features = image_features - mean_img
    A, B = text_corpus_pos - mean_txt, text_corpus_neg - mean_txt
    centered_text_features = text_features - mean_txt
    Sa = A.T @ A / (A.size(0) - 1)
    Sb = B.T @ B / (B.size(0) - 1)
    C = (1 - aa) * (Sa) - aa * Sb + 1e-5
    L, Vy_t2 = torch.linalg.eigh(C)
    L = L.flip(dims=[0])
    Vy_t = -Vy_t2.flip(dims=[1]).T
    Nc = min(int(nc), sum(L > 0).item())
    Vy_t = Vy_t[:Nc]
    projection_matrix = Vy_t.T @ Vy_t
    proj_image_features = centered_image_features @ projection_matrix
    if expansion:
        init_sim_img = proj_image_features @ centered_database_features.t()
        top_values, top_indices = torch.topk(init_sim_img, 25)
        top_features = centered_database_features[top_indices]
        top_features = torch.cat((top_features, centered_image_features.unsqueeze(1)), dim=1)
        top_values = torch.cat((top_values, torch.ones((top_values.shape[0], 1))), dim=1)
        top_values = torch.exp(.1 * top_values)
        top_values = top_values / top_values.sum(dim=1).unsqueeze(-1)
        top_features = (top_features * top_values.unsqueeze(-1)).sum(dim=1)
        proj_image_features = top_features @ projection_matrix
    sim_img = proj_image_features @ centered_database_features.t()
    sim_text = centered_text_features @ centered_database_features.t()
    gi = torch.Tensor(synthetic["image_features"])
    gt = torch.Tensor(synthetic["text_features"])
    gi, gt = gi / gi.norm(dim=1, keepdim=True), gt / gt.norm(dim=1, keepdim=True)
    gi -= mean_img
    gt -= mean_txt
    sim_img_min, sim_text_min = (gi @ gi.t()).min(), (gt @ gi.t()).min()
    sim_text = (sim_text - sim_text_min) / sim_img_min.abs()
    sim_img = (sim_img - sim_img_min) / sim_img_min.abs()
    sim_text, sim_img = torch.clamp(sim_text, min=0), torch.clamp(sim_img, min=0)
    sim_all = sim_text * sim_img - lam * (sim_text + sim_img) ** 2
    return torch.argsort(sim_all, descending=True, stable=True)


def official_contextualize(encoder, texts, corpus, number=100):
    """utils_features.contextualize: the mean of the normalised "{w} {t}" and "{t} {w}" features."""
    import torch

    def feats(batch):
        with torch.no_grad():
            f = encoder.encode_texts(batch)
            return f / f.norm(dim=1, keepdim=True)

    number = min(number, len(corpus))
    out = []
    for t in texts:
        out.append(torch.cat([feats([f"{corpus[i]} {t}" for i in range(number)]),
                              feats([f"{t} {corpus[i]}" for i in range(number)])]).mean(dim=0))
    return torch.stack(out)


# more than the 100 words the text is contextualised with (the header line counts as one, as in the code)
SUBJECTS = ["object_name", "lamp", "tower", "bridge", "dog", "cat", "car", "boat", "tree", "house", "bird", "chair"] + \
    [f"thing {i}" for i in range(95)]
STYLES = ["watercolor painting", "oil painting", "charcoal sketch", "pencil drawing", "digital illustration",
          "origami", "lego", "neon sign"]


def basic_tree(tmp_path, encoder):
    """Two instances with 27 and 26 database images (the expansion takes 25), queries with texts; the
    released files: the corpora (subjects with its header line), the LAION mean pickle and the
    synthetic set as the official code writes them."""
    import torch

    root = tmp_path / "icir"
    shapes, colours = ("circle", "square", "triangle"), ("red", "blue", "green", "yellow", "purple", "orange")
    db, queries = [], []
    for inst, n in (("lamp", 27), ("tower", 26)):
        for i in range(n):
            db.append((f"icir/database/{inst}/{i}.png", ("at night", "as origami", "hn")[i % 3], inst))
    queries = [("icir/query/lamp/q0.png", "at night", "lamp"), ("icir/query/lamp/q1.png", "as origami", "lamp"),
               ("icir/query/tower/q2.png", "at night", "tower")]
    for k, (path, *_r) in enumerate(db + queries):
        render(root / path.split("/", 1)[1], shapes[k % 3], colours[(k // 3) % 6], size=40 + k % 9, offset=k % 5)
    (root / "database_files.csv").write_text("".join(f"{p},{t},{i}\n" for p, t, i in db))
    (root / "query_files.csv").write_text("".join(f"{p},{t},{i}\n" for p, t, i in queries))
    files = root / "basic"
    files.mkdir()
    (files / "generic_subjects.csv").write_text("".join(f"{w}\n" for w in SUBJECTS))
    (files / "generic_styles.csv").write_text("".join(f"{w}\n" for w in STYLES))
    gen = torch.Generator().manual_seed(3)
    dim = encoder.embed_dim
    with open(files / "laion_1m_mean_clip.pkl", "wb") as fh:
        pickle.dump({"laion_1m_mean": 0.05 * torch.randn(1, dim, generator=gen)}, fh)
    synthetic = {"image_features": torch.randn(6, dim, generator=gen).numpy(),
                 "text_features": torch.randn(6, dim, generator=gen).numpy()}
    np.save(files / "dataset_1_sd_clip.pkl", synthetic)
    return root, db, queries, synthetic


@pytest.mark.parametrize("variant", ["preset", "no-expansion", "database-mean", "tight-synthetic", "components"])
def test_basic_ranks_as_the_official_code(tmp_path, tiny_dir, tiny_encoder, variant):
    """tight-synthetic: a synthetic set of near-identical features, whose minima are near 1, so that most
    shifted similarities are negative and both clamps decide the order; components: fewer components than
    positive eigenvalues, the synthetic file passed by --option (a file's place is not a setting)."""
    import torch

    from cirbench.storage import results

    root, db, queries, synthetic = basic_tree(tmp_path, tiny_encoder)
    if variant == "tight-synthetic":
        gen = torch.Generator().manual_seed(5)
        base = torch.randn(1, tiny_encoder.embed_dim, generator=gen)
        synthetic = {k: (base + 0.05 * torch.randn(6, tiny_encoder.embed_dim, generator=gen)).numpy()
                     for k in ("image_features", "text_features")}
        np.save(root / "basic" / "dataset_1_sd_clip.pkl", synthetic)
    if variant == "components":
        moved = tmp_path / "elsewhere.npy"
        (root / "basic" / "dataset_1_sd_clip.pkl.npy").rename(moved)
    options = {"preset": [], "no-expansion": ["basic.query_expansion=false"], "tight-synthetic": [],
               "database-mean": ["basic.image_mean=database"],
               "components": ["basic.components=5", f"basic.synthetic={tmp_path / 'elsewhere.npy'}"]}[variant]
    (cell,) = evaluate(tmp_path, root, ["basic"], encoder=f"local-dir:{tiny_dir}", options=options)
    assert cell.status == "computed", cell.error
    out = results.load_outcomes(results.read(result_file(tmp_path / "r", "basic")))
    got = out.views["subset"][0]
    gallery = [p for p, *_ in db]

    def encode(texts):
        with torch.no_grad():
            return tiny_encoder.encode_texts(texts)

    image = tiny_features(tiny_encoder, root, [p for p, *_ in queries])
    text = official_contextualize(tiny_encoder, [t for _p, t, _i in queries], SUBJECTS)
    laion = None
    if variant != "database-mean":
        with open(root / "basic" / "laion_1m_mean_clip.pkl", "rb") as fh:
            laion = pickle.load(fh)["laion_1m_mean"]
    for inst, rows in (("lamp", [0, 1]), ("tower", [2])):
        members = [i for i, r in enumerate(db) if r[2] == inst]
        database = tiny_features(tiny_encoder, root, [gallery[i] for i in members])
        want = official_basic(image[rows], text[rows], database, encode(SUBJECTS), encode(STYLES), laion, synthetic,
                              expansion=variant != "no-expansion", nc=5 if variant == "components" else 250)
        for row, ranking in zip(rows, want.tolist()):
            assert got[row][:len(members)].tolist() == [members[j] for j in ranking], (inst, row)
    setting = {"preset": "", "no-expansion": "query_expansion=false", "database-mean": "", "tight-synthetic": "",
               "components": "components=5"}[variant]
    assert cell.record.method.setting == setting
    assert cell.record.method.config["files"]["positive"].endswith("generic_subjects.csv")
    notes = cell.record.method.protocol["notes"]
    assert ("no query expansion" in notes) == (variant == "no-expansion")
    assert ("image mean: the database's mean" in notes) == (variant == "database-mean")
    assert cell.record.method.config["image_mean"] == ("the database's mean" if variant == "database-mean"
                                                       else "LAION file")


def test_basic_without_its_files_says_so_and_all_skips_it(tmp_path):
    root = icir_tree(tmp_path / "icir")
    common = ["--dataset", "icir", "--data", f"icir={root}", "--encoder", "colour-test", "--quiet",
              "--results-dir", tmp_path / "r", "--cache-dir", tmp_path / "c"]
    code, out = invoke("run", "-m", "basic", *common)
    assert code == 2 and "cirbench data get icir" in out and "basic.corpora" in out
    code, out = invoke("run", "-m", "all", *common)  # (methods that need another encoder fail on colours)
    assert "note: basic not run: basic's corpora" in out and "error: basic" not in out


def test_basic_refuses_a_pickle_that_would_run_code(tmp_path, tiny_dir, tiny_encoder):
    import os

    root, *_ = basic_tree(tmp_path, tiny_encoder)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    with open(root / "basic" / "laion_1m_mean_clip.pkl", "wb") as fh:
        pickle.dump({"laion_1m_mean": Evil()}, fh)
    (cell,) = evaluate(tmp_path, root, ["basic"], encoder=f"local-dir:{tiny_dir}")
    assert cell.status == "failed" and "refuses to load posix.system" in str(cell.error)
    assert not (tmp_path / "ran").exists()
    np.save(root / "basic" / "dataset_1_sd_clip.pkl", np.array([{"a": Evil()}], dtype=object), allow_pickle=True)
    (root / "basic" / "laion_1m_mean_clip.pkl").unlink()
    (cell,) = evaluate(tmp_path, root, ["basic"], encoder=f"local-dir:{tiny_dir}",
                       options=["basic.image_mean=database"])
    assert cell.status == "failed" and "expected a saved dict" in str(cell.error)
    assert not (tmp_path / "ran").exists()


def test_subset_scores_group_shared_subsets():
    """Queries sharing a subset are scored against it together; the result is each query's inner
    product with its own members, padding included as any value."""
    import torch

    from cirbench.protocol.scoring import subset_scores

    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(5, 4, generator=gen), torch.randn(7, 4, generator=gen)
    members = torch.tensor([[0, 1, 2], [3, 4, -1], [0, 1, 2], [6, 5, 4], [3, 4, -1]])
    got = subset_scores(q, g, members)
    for i in range(5):
        for j, m in enumerate(members[i].tolist()):
            if m >= 0:
                assert float(got[i, j]) == pytest.approx(float(q[i] @ g[m]), abs=1e-6)


def test_basic_names_what_is_wrong_with_its_files(tmp_path, tiny_dir, tiny_encoder):
    import torch

    root, *_ = basic_tree(tmp_path, tiny_encoder)
    files = root / "basic"

    def failure(*options):
        (cell,) = evaluate(tmp_path, root, ["basic"], encoder=f"local-dir:{tiny_dir}", options=options)
        assert cell.status in ("failed", "skipped")
        return str(cell.error)

    with open(files / "laion_1m_mean_clip.pkl", "wb") as fh:
        pickle.dump({"laion_1m_mean": torch.zeros(1, tiny_encoder.embed_dim + 1)}, fh)
    dim = tiny_encoder.embed_dim
    assert f"expected 'laion_1m_mean', a tensor of {dim} numbers" in failure()
    assert f"of shape (1, {dim + 1})" in failure()
    with open(files / "laion_1m_mean_clip.pkl", "wb") as fh:
        pickle.dump({"laion_1m_mean": [0.0] * dim}, fh)
    assert "found a list" in failure()
    np.save(files / "dataset_1_sd_clip.pkl", {"image_features": np.zeros(dim), "text_features": np.zeros((2, dim))})
    assert f"expected 'image_features', an N x {dim} array, found a ndarray of shape ({dim},)" in \
        failure("basic.image_mean=database")
    np.save(files / "dataset_1_sd_clip.pkl", {"text_features": np.zeros((2, dim))})
    assert f"expected 'image_features', an N x {dim} array, found nothing" in failure("basic.image_mean=database")
    for bad in ((2, dim + 1), (2, dim - 1), (0, dim), (1, 2, dim)):
        np.save(files / "dataset_1_sd_clip.pkl", {"image_features": np.zeros(bad), "text_features": np.ones((2, dim))})
        assert f"found a ndarray of shape {bad}" in failure("basic.image_mean=database"), bad
    (files / "generic_styles.csv").unlink()
    assert f"basic's corpus {files / 'generic_styles.csv'} is missing" in failure()
    # the options' bounds
    from cirbench.contracts.method import resolve_options
    from cirbench.errors import UsageError
    from cirbench.methods.basic import Basic

    for key, value in (("components", "1000001"), ("context_words", "1000001"), ("aa", "1.5"),
                       ("harris_lambda", "101")):
        with pytest.raises(UsageError, match="must lie between"):
            resolve_options("basic", Basic.options, {key: value})
    assert resolve_options("basic", Basic.options, {"components": "1000000"})["components"] == 10**6


def test_freedom_takes_its_proxies_from_the_querys_own_database(tmp_path, tiny_dir, tiny_encoder):
    """On i-CIR a query's database is its instance's: FREEDOM's neighbours come from it (the official
    FREEDOM code, run on each instance's database alone, gives the same rankings)."""
    import torch

    from cirbench.storage import results
    from test_domain_datasets import official_freedom

    root, db, queries, _ = basic_tree(tmp_path, tiny_encoder)
    names = ["red car", "blue sky", "tower", "bridge", "yellow flower", "temple", "sea", "statue"]
    corpus = tmp_path / "names.csv"
    corpus.write_text("".join(f"{n}\n" for n in names))
    (cell,) = evaluate(tmp_path, root, ["freedom"], encoder=f"local-dir:{tiny_dir}",
                       options=[f"freedom.corpus={corpus}", "freedom.kappa=3", "freedom.ni=3", "freedom.miu=2"])
    assert cell.status == "computed", cell.error
    got = results.load_outcomes(results.read(result_file(tmp_path / "r", "freedom"))).views["subset"][0]

    def text_features(texts):
        with torch.no_grad():
            return torch.nn.functional.normalize(tiny_encoder.encode_texts(texts), dim=-1)

    image = tiny_features(tiny_encoder, root, [p for p, *_ in queries])
    gallery = [p for p, *_ in db]
    bests = []
    for inst, rows in (("lamp", [0, 1]), ("tower", [2])):
        members = [i for i, r in enumerate(db) if r[2] == inst]
        database = tiny_features(tiny_encoder, root, [gallery[i] for i in members])
        bests.append(float((image[rows] @ database.T).max(dim=1).values.min()))
        for text in {queries[r][1] for r in rows}:
            mine = [r for r in rows if queries[r][1] == text]
            want = official_freedom(image[mine], database, text_features(names), names, text_features, text, 3, 3, 2)
            for row, ranking in zip(mine, want.tolist()):
                assert got[row][:len(members)].tolist() == [members[j] for j in ranking], (inst, row)
    assert len({b < 0.98 for b in bests}) == 1  # both instances take the same self-proxy decision here


def test_freedoms_neighbours_stay_in_the_querys_database():
    """Hand-made features: the query's nearest image overall (gallery row 0) is in the other instance's
    database; its own database is rows 3, 4, 5, whose nearest is 4 then 5."""
    from types import SimpleNamespace

    import torch

    from cirbench.methods.freedom import Freedom

    gallery = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0], [0.6, 0.4], [0.5, 0.5]])
    image = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05]]), dim=-1)
    batch = SimpleNamespace(gallery=SimpleNamespace(features=gallery), subsets=[[3, 4, 5]])
    best, chosen = Freedom._neighbours(batch, image, 2)
    norm = torch.nn.functional.normalize(gallery, dim=-1)
    assert torch.allclose(chosen[0], norm[[4, 5]]) and float(best[0]) == pytest.approx(float(image[0] @ norm[4]))
    whole = SimpleNamespace(gallery=SimpleNamespace(features=gallery), subsets=None)
    assert torch.allclose(Freedom._neighbours(whole, image, 2)[1][0], norm[[0, 1]])


def test_the_report_gives_mmap_no_interval_and_no_test(tmp_path):
    import pandas as pd

    root = icir_tree(tmp_path / "icir")
    evaluate(tmp_path, root, ["image-only", "text-only"])
    code, out = invoke("report", "--results-dir", tmp_path / "r", "--out", tmp_path / "rep")
    assert code == 0, out
    md = (tmp_path / "rep" / "results.md").read_text()
    assert "mmAP, minmAP are per-instance statistics, given without interval or test" in md
    assert "| colour-test | image-only | 47.22 [" in md and "41.67 (n/a)" in md
    comp = pd.read_csv(tmp_path / "rep" / "comparisons.csv")
    assert set(comp.metric) == {"mAP"} and "Paired comparisons, test mmAP" not in md


def test_basics_defaults_are_the_official_preset():
    """run_retrieval.py METHOD_PRESETS["basic"] and calculate_rankings' constants."""
    from cirbench.methods import basic

    defaults = {k: o.default for k, o in basic.Basic.options.items()}
    assert defaults == {"image_mean": None, "synthetic": None, "corpora": None, "query_expansion": True,
                        "contextualize": True, "normalize": True, "components": 250, "aa": 0.2,
                        "harris_lambda": 0.1, "context_words": 100}
    assert (basic.EXPANSION, basic.EXPANSION_TEMPERATURE, basic.SCATTER_SHIFT) == (25, 0.1, 1e-5)
    assert not any(basic.Basic.options[k].in_setting for k in ("image_mean", "synthetic", "corpora"))
