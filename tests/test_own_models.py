"""Methods that bring their own model: BGE-VL (a transformers CLIP folder) and MagicLens (a checkpoint in
the released Flax format), built small by the tests, compared with the official evaluations written
independently here from the official code (MegaPairs eval/flag_mmret.py + flag_dataset.py; MagicLens
inference.py + data_utils.py, with a Flax forward pass for the model), through the CLI and the API."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import real_fixtures as F
from helpers import query_batch, rankings, result_file, run_cli, split_view

pytest.importorskip("transformers")
normalize = torch.nn.functional.normalize

LONG = " ".join(["the", "red", "dog", "sits", "beside", "a", "green", "cup", "and"] * 10)  # ~90 tokens


# -- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hfclip_dir(tmp_path_factory):
    from hf_models import tiny_hf_clip

    return tiny_hf_clip(tmp_path_factory.mktemp("bgevl") / "BGE-VL-tiny")


@pytest.fixture(scope="module")
def magiclens(tmp_path_factory):
    """(flax module, variables, checkpoint path) of a tiny MagicLens with random parameters."""
    import magiclens_reference as R

    module, variables = R.build(seed=3)
    path = R.write_checkpoint(tmp_path_factory.mktemp("magiclens") / "magic_lens_tiny.pkl", variables)
    return module, variables, path


def noise_image(path, size, peak, seed):
    """A textured, non-square image whose brightest sample is ``peak`` (below 255: dividing by the
    image's own maximum differs from dividing by 255)."""
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = rng.integers(0, peak + 1, size=(h, w, 3), dtype=np.uint8)
    pixels[0, 0, 0] = peak
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


SIZES = {1: (45, 30), 2: (30, 47), 3: (64, 20), 4: (37, 37), 5: (50, 41), 6: (23, 60), 7: (70, 33), 8: (41, 44)}


def circo_root(root, long_caption: bool):
    for i, size in SIZES.items():
        noise_image(root / "COCO2017_unlabeled" / "unlabeled2017" / f"{i:012d}.png", size, 120 + 15 * i, i)
        # CIRCO's files are .jpg; PNG bytes under that name keep the test free of JPEG rounding
        (root / "COCO2017_unlabeled" / "unlabeled2017" / f"{i:012d}.png").rename(
            root / "COCO2017_unlabeled" / "unlabeled2017" / f"{i:012d}.jpg")
    F.dump(root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
           {"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in SIZES]})
    rows = [{"id": 0, "reference_img_id": 1, "target_img_id": 5, "gt_img_ids": [5, 3], "shared_concept": "a thing",
             "relative_caption": LONG if long_caption else "is larger and has two of them"},
            {"id": 1, "reference_img_id": 4, "target_img_id": 7, "gt_img_ids": [7], "shared_concept": "two cats",
             "relative_caption": "costs 5!$ more"},
            {"id": 2, "reference_img_id": 2, "target_img_id": 8, "gt_img_ids": [8, 6], "shared_concept": "a dog",
             "relative_caption": "is green"}]
    F.dump(root / "annotations" / "val.json", rows)
    F.dump(root / "annotations" / "test.json", [])
    return root, rows


def image_path(root, i):
    return root / "COCO2017_unlabeled" / "unlabeled2017" / f"{i:012d}.jpg"


def official_top(query, index, ids):
    """Gallery ids by inner product, best first (inference.py's argsort; faiss Flat for MegaPairs)."""
    scores = np.asarray(query) @ np.asarray(index).T
    return [[ids[j] for j in np.argsort(-row, kind="stable")] for row in scores]


# -- BGE-VL ---------------------------------------------------------------------------------------------

def official_bge_vl(model_dir, root, rows, max_length=75):
    """eval_Circo.py through Flag_mmret: CLIPModel (float32), AutoTokenizer, CLIPImageProcessor (the PIL
    processor of transformers 4.x); corpus = normalise(image features); query = normalise(text features
    (MMIT_Collator: truncation at caption_max_len=75, padding) + image features)."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

    model = CLIPModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    processor = CLIPImageProcessorPil.from_pretrained(model_dir)

    def pixels(paths):
        return torch.stack([torch.tensor(np.asarray(processor(Image.open(p).convert("RGB"))["pixel_values"][0]))
                            for p in paths])

    def features(out):
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    ids = list(SIZES)
    with torch.no_grad():
        index = normalize(features(model.get_image_features(pixel_values=pixels([image_path(root, i) for i in ids]))),
                          dim=-1)
        texts = [f"Find a picture that also {r['shared_concept']}, but {r['relative_caption']}." for r in rows]
        tokens = tokenizer(texts, truncation=True, padding=True, max_length=max_length, return_tensors="pt")
        text = features(model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]))
        image = features(model.get_image_features(pixel_values=pixels([image_path(root, r["reference_img_id"])
                                                                        for r in rows])))
        query = normalize(text + image, dim=-1)
    return query.numpy(), index.numpy(), [str(i) for i in ids]


def test_bge_vl_ranks_as_the_official_evaluation(tmp_path, hfclip_dir):
    root, rows = circo_root(tmp_path / "circo", long_caption=True)
    run_cli(tmp_path, "--method", "bge-vl", "--dataset", "circo:val", "--data", f"circo={root}",
            "--option", f"bge-vl.model={hfclip_dir}", "--feature-dtype", "fp32")
    query, index, ids = official_bge_vl(hfclip_dir, root, rows)
    assert rankings(tmp_path, "bge-vl") == official_top(query, index, ids)
    record = json.loads(result_file(tmp_path / "r", "bge-vl").read_text())
    assert record["encoder"]["identity"]["kind"] == "hf-clip" and record["method"]["own_model"] is True
    assert record["method"]["text_length"] == 75 and record["encoder"]["identity"]["text_length"] == 75
    assert record["method"]["config"]["prompt"] == "Find a picture that also {shared_concept}, but {text}."


def test_bge_vl_query_vectors_are_the_official_ones(tmp_path, hfclip_dir):
    """The query vector itself: the template, the raw sum, the 75-token cut (77 gives another vector for
    the long caption, so the comparison sees the cut)."""
    from cirbench.api import build_methods, method_options
    from cirbench.contracts.encoder import load_encoder
    from cirbench.contracts.registry import methods
    from cirbench.engine import Engine, RunOptions

    BGEVL = methods.get("bge-vl")

    root, rows = circo_root(tmp_path / "circo", long_caption=True)
    engine = Engine(load_encoder(f"hf-clip:{hfclip_dir}"), RunOptions(results_dir=None, cache_dir=tmp_path / "c"))
    options = method_options({"bge-vl": {"model": str(hfclip_dir)}}, [("bge-vl", BGEVL)])
    method = build_methods(engine, [("bge-vl", BGEVL)], {}, options, None, None)[0].instance
    view = split_view(dataset="circo")
    method.split = view
    method.prepare(view)
    enc = method.ctx.encoder
    refs = enc.encode_images(torch.stack([enc.preprocess(Image.open(image_path(root, r["reference_img_id"])))
                                          for r in rows]))
    batch = query_batch(method, refs, [r["relative_caption"] for r in rows],
                        [{"shared_concept": r["shared_concept"]} for r in rows])
    got = method.encode_queries(batch).numpy()
    want, _, _ = official_bge_vl(hfclip_dir, root, rows)
    np.testing.assert_allclose(got, want, atol=2e-5)
    cut_at_77, _, _ = official_bge_vl(hfclip_dir, root, rows, max_length=77)
    assert np.abs(cut_at_77[0] - want[0]).max() > 1e-3  # the long caption: the cut changes its vector


def test_bge_vl_templates_per_dataset(tiny_encoder):
    from helpers import method_for

    fields = {"c1": "is red ", "c2": "has a dog", "shared_concept": "a cat"}
    texts = {}
    for dataset in ("fashioniq", "circo", "cirr"):
        method = method_for("bge-vl", tiny_encoder, dataset=dataset, prompts={"caption": "[{text}]"})
        seen = []
        method.ctx.text_features = lambda t: seen.extend(t) or torch.zeros(len(t), tiny_encoder.embed_dim)
        method.encode_queries(query_batch(method, torch.ones(1, tiny_encoder.embed_dim), ["x y"], [fields]))
        texts[dataset] = seen[0]
    assert texts == {"fashioniq": "is red , and has a dog", "circo": "Find a picture that also a cat, but x y.",
                     "cirr": "[x y]"}


# -- MagicLens ------------------------------------------------------------------------------------------

def test_magiclens_matches_a_flax_forward_pass(magiclens):
    """Pixels (own maximum, two antialiased resizes, no crop), tokens (id 0 for a lone '!' byte, padded
    with 0), CLIP embeddings and the fused embedding agree with JAX on the same parameters."""
    import jax.numpy as jnp

    import magiclens_reference as R
    from cirbench.encoders.magiclens import build_magiclens

    module, variables, path = magiclens
    enc = build_magiclens(str(path), spec=f"magiclens:{path}", device="cpu", precision="fp32", transform="clip")
    assert enc.identity["sizes"]["resolution"] == 32 and enc.identity["sizes"]["vision_heads"] == 4
    tmp = path.parent
    files = [noise_image(tmp / f"n{i}.png", size, peak, i) for i, (size, peak) in
             enumerate([((45, 30), 140), ((30, 47), 255), ((300, 90), 90)])]
    want_px = np.concatenate([np.asarray(R.official_pixels(f, 32)) for f in files])
    got_px = torch.stack([enc.preprocess(Image.open(f)) for f in files])
    np.testing.assert_allclose(got_px.numpy(), want_px.transpose(0, 3, 1, 2), atol=2e-5)
    texts = ["costs 5!$ more", "", "find a dog but is green"]
    ids = R.official_tokens(texts)
    assert 0 in np.asarray(ids)[0, 1:5]  # the '!' byte is token 0, which the text tower masks
    assert (enc.tokenize(texts).numpy() == np.asarray(ids)).all()
    with torch.no_grad():
        img, txt = enc.encode_images(got_px), enc.encode_texts(texts)
        fused = enc.fuse(img, txt)
    want_img, want_txt = module.apply(variables, jnp.asarray(want_px), ids, method=R.MagicLensFlax.clip_embeddings)
    np.testing.assert_allclose(img.numpy(), np.asarray(want_img), atol=2e-5)
    np.testing.assert_allclose(txt.numpy(), np.asarray(want_txt), atol=2e-5)
    np.testing.assert_allclose(fused.numpy(), np.asarray(module.apply(variables, jnp.asarray(want_px), ids)), atol=2e-5)
    # embeddings so small that the fusion's LayerNorm epsilon (1e-6) matters
    small_img, small_txt = 1e-3 * img, 1e-3 * txt
    want_small = module.apply(variables, jnp.asarray(small_img.numpy()), jnp.asarray(small_txt.numpy()),
                              method=R.MagicLensFlax.fuse)
    np.testing.assert_allclose(enc.fuse(small_img, small_txt).numpy(), np.asarray(want_small), atol=2e-5)


def test_magiclens_sizes_come_from_the_shapes(tmp_path):
    """Another shape of the same format (wider, 3 heads, patch 4, 16 px, 2 fusion layers) loads and
    agrees with JAX: nothing is fixed to base or large."""
    import jax.numpy as jnp

    import magiclens_reference as R
    from cirbench.encoders.magiclens import build_magiclens

    sizes = dict(vocab=49408, embed=18, text_width=24, text_layers=1, text_heads=3, vision_width=36,
                 vision_layers=1, vision_heads=3, patch=4)
    module = R.MagicLensFlax(sizes, heads=3, layers=2)
    import jax

    shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)), jnp.ones((1, 77), jnp.int32))
    leaves, tree = jax.tree_util.tree_flatten(shapes)
    rng = np.random.default_rng(1)
    variables = jax.tree_util.tree_unflatten(tree, [jnp.asarray(0.2 * rng.standard_normal(x.shape), x.dtype)
                                                    for x in leaves])
    path = R.write_checkpoint(tmp_path / "other.pkl", variables)
    enc = build_magiclens(str(path), spec=f"magiclens:{path}", device="cpu", precision="fp32", transform="clip")
    s = enc.identity["sizes"]
    assert (s["resolution"], s["patch"], s["vision_heads"], s["fusion_layers"], s["fusion_heads"], s["embed_dim"],
            s["pool_head_dim"]) == (16, 4, 3, 2, 3, 18, 24)
    image = noise_image(tmp_path / "x.png", (29, 50), 200, 9)
    px = R.official_pixels(image, 16)
    ids = R.official_tokens(["a dog"])
    with torch.no_grad():
        got = enc.fuse(enc.encode_images(enc.preprocess(Image.open(image))[None]), enc.encode_texts(["a dog"]))
    np.testing.assert_allclose(got.numpy(), np.asarray(module.apply(variables, px, ids)), atol=2e-5)


def official_magiclens(module, variables, root, rows):
    """inference.py on CIRCO: index = model(image, tokenizer('')); query = model(reference,
    'find {shared_concept} but {relative_caption}'); embeddings normalised by the model."""
    import jax.numpy as jnp

    import magiclens_reference as R

    ids = list(SIZES)
    index = module.apply(variables, jnp.concatenate([R.official_pixels(image_path(root, i), 32) for i in ids]),
                         R.official_tokens([""] * len(ids)))
    texts = [f"find {r['shared_concept']} but {r['relative_caption']}" for r in rows]
    query = module.apply(variables, jnp.concatenate([R.official_pixels(image_path(root, r["reference_img_id"]), 32)
                                                     for r in rows]), R.official_tokens(texts))
    return np.asarray(query), np.asarray(index), [str(i) for i in ids]


def test_magiclens_ranks_as_the_official_inference(tmp_path, magiclens):
    module, variables, path = magiclens
    root, rows = circo_root(tmp_path / "circo", long_caption=False)
    # a bare --checkpoint FILE belongs to the one method of the run that takes weights
    run_cli(tmp_path, "--method", "magiclens", "--checkpoint", str(path), "--dataset", "circo:val",
            "--data", f"circo={root}", "--feature-dtype", "fp32")
    query, index, ids = official_magiclens(module, variables, root, rows)
    assert rankings(tmp_path, "magiclens") == official_top(query, index, ids)
    record = json.loads(result_file(tmp_path / "r", "magiclens").read_text())
    assert record["method"]["config"]["prompt"] == "find {shared_concept} but {text}"
    assert record["encoder"]["identity"]["kind"] == "magiclens"
    assert record["encoder"]["label"] == "magiclens (32-wide vision, patch 8, 24-d) (magic_lens_tiny.pkl)"


def test_magiclens_templates_and_the_empty_gallery_instruction(tiny_encoder, magiclens):
    from cirbench.encoders.magiclens import build_magiclens
    from helpers import method_for

    _, _, path = magiclens
    enc = build_magiclens(str(path), spec=f"magiclens:{path}", device="cpu", precision="fp32", transform="clip")
    fields = {"c1": "is red ", "c2": "has a dog", "shared_concept": "a cat"}
    seen = {}
    for dataset in ("fashioniq", "circo", "imagenet-r", "cirr"):
        method = method_for("magiclens", enc, dataset=dataset, prompts={"caption": "<{text}>"}, checkpoint=path)
        texts = []
        method.ctx.text_features = lambda t: texts.extend(t) or enc.encode_texts(t)
        method.encode_queries(query_batch(method, torch.ones(1, enc.embed_dim), ["toy"], [fields]))
        seen[dataset] = texts[0]
    assert seen == {"fashioniq": "is red  and has a dog", "circo": "find a cat but toy",
                    "imagenet-r": "find this object in toy", "cirr": "<toy>"}
    from cirbench.contracts.method import Gallery

    feats = torch.randn(3, enc.embed_dim)
    gallery = method.encode_gallery(Gallery(ids=["a", "b", "c"], images=[None] * 3, features=feats, split=method.split))
    want = enc.fuse(feats, enc.encode_texts([""]).expand(3, -1))
    assert torch.allclose(gallery, want, atol=1e-6) and not torch.allclose(gallery, normalize(feats), atol=1e-2)


def test_magiclens_refuses_a_text_longer_than_its_context(tmp_path, magiclens):
    _, _, path = magiclens
    root, _ = circo_root(tmp_path / "circo", long_caption=True)
    result = run_cli(tmp_path, "--method", "magiclens", "--checkpoint", f"magiclens={path}", "--dataset",
                     "circo:val", "--data", f"circo={root}", code=2)
    assert "longer than MagicLens's 77 tokens" in result.output


def test_bad_magiclens_files_are_refused_naming_the_file(tmp_path):
    import os

    from cirbench.encoders.magiclens import read_params
    from cirbench.errors import DataError

    code = tmp_path / "code.pkl"
    code.write_bytes(pickle.dumps(os.getcwd))  # a pickle that would call a function
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(pickle.dumps(b"\x00\x01 not msgpack"))
    other = tmp_path / "other.pkl"
    import msgpack

    other.write_bytes(pickle.dumps(msgpack.packb({"params": {"clip": {}}})))
    with pytest.raises(DataError, match="code.pkl.*refuses to load"):
        read_params(code)
    with pytest.raises(DataError, match="junk.pkl"):
        read_params(junk)
    from cirbench.encoders.magiclens import build_magiclens

    with pytest.raises(DataError, match=r"other.pkl: a MagicLens checkpoint holds params/clip/visual"):
        build_magiclens(str(other), spec=f"magiclens:{other}", device="cpu", precision="fp32", transform="clip")


# -- bringing a model through the run ---------------------------------------------------------------------

def test_offline_missing_model_is_one_line_without_network(tmp_path, monkeypatch, network_attempts):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub

    # as in a process started with HF_HUB_OFFLINE=1 (huggingface_hub reads it once, at import)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    root, _ = circo_root(tmp_path / "circo", long_caption=False)
    result = run_cli(tmp_path, "--method", "bge-vl", "--dataset", "circo:val", "--data", f"circo={root}", code=2)
    lines = [ln for ln in result.output.splitlines() if "BAAI/BGE-VL-base" in ln]
    assert lines and "HF_HUB_OFFLINE" in lines[0] and str(tmp_path / "hub") in lines[0]
    assert network_attempts == []

    # a pinned revision travels from the option to the lookup, and the error names it
    result = run_cli(tmp_path, "--method", "bge-vl", "--dataset", "circo:val", "--data", f"circo={root}",
                     "--option", "bge-vl.revision=0a1b2c3d", code=2)
    assert "'BAAI/BGE-VL-base' at revision 0a1b2c3d" in result.output


def test_method_all_skips_own_models_it_does_not_have_and_downloads_nothing(tmp_path, tiny_dir, monkeypatch):
    import cirbench.util.hub as hub

    checked, loaded = [], []
    real_check, real_load = hub.require_cached, hub.load_pretrained

    def checking(model_id, revision, what):
        checked.append((model_id, hub.offline_set()))
        return real_check(model_id, revision, what)

    def loading(loaders, model_id, revision, what, **kw):
        loaded.append(model_id)
        return real_load(loaders, model_id, revision, what, **kw)

    monkeypatch.setattr("cirbench.encoders.hfclip.require_cached", checking)
    monkeypatch.setattr("cirbench.encoders.hfclip.load_pretrained", loading)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    root, _ = circo_root(tmp_path / "circo", long_caption=False)
    # (pic2word and the combiner fail here: no trained weights for this encoder)
    result = run_cli(tmp_path, "--dataset", "circo:val", "--data", f"circo={root}", "--encoder", f"local-dir:{tiny_dir}",
                     code=2)
    out = json.loads(result.stdout)
    status = {c["method"]: c["status"] for c in out["cells"]}
    assert status["bge-vl"] == status["bge-vl-large"] == status["magiclens"] == "skipped"
    assert status["image-only"] == "computed"
    # only the local cache was read, and the missing models were known missing before any loading
    assert {m for m, _ in checked} == {"BAAI/BGE-VL-base", "BAAI/BGE-VL-large"} and all(o for _, o in checked)
    assert loaded == []
    assert "name the method to download it" in result.output and "not in the local cache" in result.output


def test_a_missing_hub_model_is_said_before_transformers_is_imported(tmp_path):
    """`--method all` looks for every model a method brings; one that is not cached costs no import of
    transformers' CLIP (seconds on every warm run)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from cirbench.contracts.encoder import load_encoder\n"
            "from cirbench.errors import MissingResourceError\n"
            "try:\n"
            "    load_encoder('hf-clip:BAAI/BGE-VL-base', device='cpu', precision='fp32', transform='clip')\n"
            "except MissingResourceError as exc:\n"
            "    print('missing:', exc)\n"
            "print('imported:', 'transformers.models.clip.modeling_clip' in sys.modules)\n")
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert "missing: cannot load the CLIP model 'BAAI/BGE-VL-base'" in out and "not in the local cache" in out
    assert "imported: False" in out


def test_own_models_beside_clip_methods_in_one_report(tmp_path, hfclip_dir, magiclens, tiny_dir):
    """One run of a CLIP method, BGE-VL and MagicLens: three encoders, one table, paired tests across
    encoders on the same queries."""
    from typer.testing import CliRunner

    from cirbench.cli import app

    _, _, path = magiclens
    root, _ = circo_root(tmp_path / "circo", long_caption=False)
    run_cli(tmp_path, "--method", "image-only,bge-vl,magiclens", "--encoder", f"local-dir:{tiny_dir}",
            "--dataset", "circo:val", "--data", f"circo={root}", "--option", f"bge-vl.model={hfclip_dir}",
            "--checkpoint", f"magiclens={path}")
    result = CliRunner().invoke(app, ["report", "--results-dir", str(tmp_path / "r"), "--out", str(tmp_path / "rep"),
                                      "--bootstrap", "200"])
    assert result.exit_code == 0, result.output
    import pandas as pd

    comp = pd.read_csv(tmp_path / "rep" / "comparisons.csv")
    across = comp[comp.encoder == "across encoders"]
    pairs = {frozenset((a.split(" [")[0], b.split(" [")[0])) for a, b in zip(across.method_a, across.method_b)}
    assert pairs == {frozenset(("image-only", "bge-vl")), frozenset(("image-only", "magiclens")),
                     frozenset(("bge-vl", "magiclens"))}
    assert (across.queries == 3).all()
    md = (tmp_path / "rep" / "results.md").read_text()
    assert "bge-vl" in md and "magiclens" in md and "hf-clip:" in md
    compared = CliRunner().invoke(app, ["compare", "image-only", "bge-vl", "--results-dir", str(tmp_path / "r"),
                                        "--json", "--bootstrap", "200"])
    assert compared.exit_code == 0, compared.output
    rows = json.loads(compared.stdout)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert rows and all(" vs hf-clip:" in r["encoder"] and r["queries"] == 3 for r in rows)


def test_a_joint_embedder_reads_the_reference_pixels(tmp_path, tiny_dir):
    """A plugin method whose query is one forward pass over the reference image (as multimodal LLM
    embedders compute theirs) gets the pixels through batch.reference_pixels(): here it re-encodes them
    and must rank exactly as image-only does from the cached features."""
    from cirbench import api
    from cirbench.contracts.method import Method

    class JointToy(Method):
        name = "joint-toy"

        def encode_queries(self, batch):
            pixels = batch.reference_pixels()
            assert pixels.shape[0] == len(batch) and pixels.dim() == 4
            return self.ctx.encoder.encode_images(pixels)

    root, _ = circo_root(tmp_path / "circo", long_caption=False)
    ev = api.evaluate(methods=[JointToy, "image-only"], datasets=["circo:val"], data={"circo": root},
                      encoder=f"local-dir:{tiny_dir}", results_dir=tmp_path / "r", cache_dir=tmp_path / "c",
                      workers=0, feature_dtype="fp32")
    assert [c.status for c in ev.cells] == ["computed", "computed"]
    assert rankings(tmp_path, "joint-toy") == rankings(tmp_path, "image-only")


def test_hf_clip_encoder_runs_the_feature_methods_and_refuses_pseudo_words(tmp_path, hfclip_dir):
    root, _ = circo_root(tmp_path / "circo", long_caption=False)
    result = run_cli(tmp_path, "--method", "image+text,pic2word", "--encoder", f"hf-clip:{hfclip_dir}",
                     "--dataset", "circo:val", "--data", f"circo={root}", code=2)
    out = json.loads(result.stdout)
    status = {c["method"]: c["status"] for c in out["cells"]}
    assert status == {"image+text": "computed", "pic2word": "failed"}


def test_imagenet_r_hit_rate_setting(tmp_path):
    from cirbench.api import open_dataset
    from cirbench.errors import UsageError

    root = F.imagenet_r(tmp_path / "imagenet-r")
    ds, _ = open_dataset("imagenet-r", overrides={"imagenet-r": root}, settings={"metric": "hit"})
    split = ds.load("cartoon")
    assert split.metrics == {"recall": [1, 5, 10, 50, 100, 200]} and ds.result_name == "imagenet-r-hit"
    plain, _ = open_dataset("imagenet-r", overrides={"imagenet-r": root})
    assert "positive_recall" in plain.load("cartoon").metrics and plain.result_name == "imagenet-r"
    bad, _ = open_dataset("imagenet-r", overrides={"imagenet-r": root}, settings={"metric": "map"}, check_splits=False)
    with pytest.raises(UsageError, match="metric=map"):
        bad.load("cartoon")


def test_both_clip_kinds_round_their_weights_through_fp16_alike(tiny_encoder, hfclip_dir):
    """LinCIR's habit (fp16 weights used in float32) on either encoder kind: every floating weight is
    exactly its float16 value, the loaded encoder is untouched, and anything else is refused."""
    import torch

    from cirbench.contracts.encoder import load_encoder
    from cirbench.errors import UsageError

    for enc in (tiny_encoder, load_encoder(f"hf-clip:{hfclip_dir}")):
        before = {k: v.clone() for k, v in enc.model.state_dict().items()}
        rounded = enc.with_weights("fp16")
        assert rounded.identity["weights_rounding"] == "fp16" and "weights_rounding" not in enc.identity
        assert rounded.key != enc.key and rounded.with_weights("fp16") is rounded and enc.with_weights("loaded") is enc
        changed = 0
        for name, tensor in rounded.model.state_dict().items():
            if tensor.is_floating_point():
                assert torch.equal(tensor, before[name].half().float()), name
                changed += int(not torch.equal(tensor, before[name]))
            assert torch.equal(enc.model.state_dict()[name], before[name])
        assert changed > 0
        for bad, source in (("bf16", enc), ("loaded", rounded)):
            with pytest.raises(UsageError, match=f"cannot take weights '{bad}'"):
                source.with_weights(bad)
