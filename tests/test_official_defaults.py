"""The training-free methods' defaults are their official code's: transforms, per-dataset paths,
released fields, generation settings, metric rules (issue 17).

Expected values come from the official rule applied by hand, or from an independent few-line
re-implementation of the official pipeline in this file (official TargetPad, Hugging Face's
CLIPImageProcessor, weights rounded by hand), never from the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import real_fixtures as F
from cirbench.cli import app
from helpers import query_batch, rankings, run_cli, split_view

normalize = torch.nn.functional.normalize


# -- an independent copy of the official preprocessing ------------------------------------------------

class OfficialTargetPad:
    """LDRE/SEIZE/SEARLE utils.TargetPad, as written there."""

    def __call__(self, image):
        import torchvision.transforms.functional as FT

        w, h = image.size
        if max(w, h) / min(w, h) < 1.25:
            return image
        scaled = max(w, h) / 1.25
        hp, vp = max(int((scaled - w) / 2), 0), max(int((scaled - h) / 2), 0)
        return FT.pad(image, [hp, vp, hp, vp], 0, "constant")


def official_transform(size: int, targetpad: bool):
    """utils.targetpad_transform(1.25, size) (or CLIP's own) with the tiny CLIP's normalisation."""
    from torchvision import transforms as T

    steps = [OfficialTargetPad()] if targetpad else []
    return T.Compose([*steps, T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                      lambda im: im.convert("RGB"), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])


def tiny_open_clip(tiny_dir):
    import open_clip

    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tiny_dir}")
    return model.eval(), open_clip.get_tokenizer(f"local-dir:{tiny_dir}")


# -- a CIRCO tree whose images are elongated and patterned ------------------------------------------

WORDS = ["red", "green", "blue", "yellow", "white", "gray", "dog", "cat", "cup", "car", "tree", "boat"]


def striped(path, size, colours):
    """A wide (or tall) image of vertical bands: TargetPad and a centre crop see different parts of it."""
    w, h = size
    image = Image.new("RGB", size)
    band = w // len(colours)
    for i, c in enumerate(colours):
        image.paste(F.RGB255[c], (i * band, 0, w if i == len(colours) - 1 else (i + 1) * band, h))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=100)


def circo_tree(root, n_texts=15):
    """Seven elongated images; two val queries carrying LDRE's/SEIZE's released fields (15 captions and
    15 rewrites each, all different, so the ensemble weights are not uniform)."""
    patterns = {1: ["red", "blue", "red"], 2: ["green", "yellow", "gray"], 3: ["white", "red", "blue"],
                4: ["blue", "blue", "yellow"], 5: ["gray", "green", "white"], 6: ["yellow", "red", "green"],
                7: ["red", "white", "gray", "blue"]}
    # 35 x 32 and 32 x 35: a centre crop to 32 starts at offset 1.5, rounded down by Hugging Face's
    # image processor and to 2 by torchvision
    sizes = {6: (35, 32), 7: (32, 35)}
    for i, colours in patterns.items():
        size = sizes.get(i, (64, 16) if i % 2 else (20, 56))
        striped(root / "COCO2017_unlabeled" / "unlabeled2017" / f"{i:012d}.jpg", size, colours)
    F.dump(root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
           {"images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in patterns]})
    rng = np.random.default_rng(0)

    def texts(k):
        return [" ".join(["a", *rng.choice(WORDS, size=3)]) for _ in range(k)]

    rows = [{"id": 0, "reference_img_id": 1, "target_img_id": 5, "relative_caption": "is green",
             "shared_concept": "a thing", "gt_img_ids": [5, 3]},
            {"id": 1, "reference_img_id": 4, "target_img_id": 7, "relative_caption": "has a dog",
             "shared_concept": "a thing", "gt_img_ids": [7]}]
    for row in rows:
        row.update({"multi_caption_opt": texts(n_texts), "multi_gpt-3.5_opt": texts(n_texts),
                    "blip2_caption": texts(1)[0], "gpt-3.5-turbo": texts(1)[0]})
    F.dump(root / "annotations" / "val.json", rows)
    return root, rows


def official_ldre_seize(tiny_dir, root, rows, targetpad=True):
    """LDRE's circo_generate_test_dict and SEIZE's circo path, written from the official files."""
    model, tokenizer = tiny_open_clip(tiny_dir)
    transform = official_transform(32, targetpad)
    ids = [str(i) for i in range(1, 8)]
    with torch.no_grad():
        pixels = torch.stack([transform(Image.open(root / "COCO2017_unlabeled" / "unlabeled2017" / f"{int(i):012d}.jpg"))
                              for i in ids])
        index = normalize(model.encode_image(pixels).float(), dim=-1)

        def feats(texts):
            return model.encode_text(tokenizer(texts)).float()

        n = 15
        gpt = [normalize(feats([r["multi_gpt-3.5_opt"][i] for r in rows]), dim=-1) for i in range(n)]
        blip = [normalize(feats([r["multi_caption_opt"][i] for r in rows]), dim=-1) for i in range(n)]
        drops = []
        for i in range(n):
            diff = gpt[i] @ index.T - blip[i] @ index.T
            diff[diff > 0] = 0
            drops.append(torch.topk(-diff, dim=-1, k=5).values.sum().item())
        drops = torch.tensor(drops)
        weight = torch.softmax(drops / drops.max() / 0.04, 0)
        ldre = (torch.stack(gpt) * weight[:, None, None]).sum(0) @ index.T
        # SEIZE: the raw features averaged over the 15 texts, then normalised
        after = normalize(torch.stack([feats([r["multi_gpt-3.5_opt"][i] for r in rows]) for i in range(n)]).mean(0),
                          dim=-1) @ index.T
        before = normalize(torch.stack([feats([r["multi_caption_opt"][i] for r in rows]) for i in range(n)]).mean(0),
                           dim=-1) @ index.T
        diff = after - before
        seize = after + 2.1 * diff.clamp(max=0) + 0.13 * diff.clamp(min=0)
        for q, row in enumerate(rows):
            seize[q, ids.index(str(row["reference_img_id"]))] = -1
        # CIReVL (utils.text_encoding, compute_results.circo): the normalised feature of the rewrite
        cirevl = normalize(feats([r["gpt-3.5-turbo"] for r in rows]), dim=-1) @ index.T
    order = lambda s: [[ids[j] for j in torch.argsort(row, descending=True).tolist()] for row in s]  # noqa: E731
    return order(ldre), order(seize), order(cirevl)


def test_ldre_seize_cirevl_by_default_rank_as_their_official_code(tmp_path, tiny_dir):
    """No flag: TargetPad, released fields, the relevance ensemble and the increment rule give the
    official rankings. (fp32 feature storage keeps the comparison exact; the default fp16 storage rounds
    the features to about three digits.) The same images through CLIP's centre crop rank differently,
    so the transform is what this test pins."""
    root, rows = circo_tree(tmp_path / "circo")
    run_cli(tmp_path, "-m", "ldre,seize,cirevl", "--dataset", "circo:val", "--data", f"circo={root}",
            "--encoder", f"local-dir:{tiny_dir}", "--feature-dtype", "fp32")
    official = official_ldre_seize(tiny_dir, root, rows)
    assert [rankings(tmp_path, m) for m in ("ldre", "seize", "cirevl")] == list(official)
    assert official_ldre_seize(tiny_dir, root, rows, targetpad=False) != official


def texts_encoder(vectors: dict[str, list[float]]):
    """text_features for method-level tests: each text's raw feature given by hand."""
    def encode(texts):
        return torch.tensor([vectors[t] for t in texts], dtype=torch.float32)
    return encode


class FakeEncoder:
    device = "cpu"
    embed_dim = 2
    token_width = 2


def ldre_method(dataset: str, vectors=None):
    from cirbench.contracts.method import MethodContext, resolve_options
    from cirbench.contracts.registry import methods

    cls = methods.get("ldre")
    vectors = vectors or {"r1": [3.0, 0.0], "r2": [0.0, 1.0], "c": [0.0, 1.0]}
    ctx = MethodContext(encoder=FakeEncoder(), text_features=texts_encoder(vectors),
                        options=resolve_options("ldre", cls.options, {"n": 2}))
    method = cls(ctx)
    method.split = split_view(dataset=dataset)
    method.split.query_fields = frozenset({"multi_caption_opt", "multi_gpt-3.5_opt"})
    method.prepare(method.split)
    return method


def test_ldre_on_cirr_averages_the_raw_rewrites_and_on_circo_weights_them():
    """One query, two rewrites of different norms: r1 = (3, 0), r2 = (0, 1); both captions (0, 1);
    gallery e1, e2.
    CIRR (cirr_generate_test_predictions): normalise((r1 + r2) / 2) = (.9487, .3162).
    CIRCO (circo_generate_test_dict): drops of rewrite 1 max(0, c.x - f1.x) = (0, 1), summed 1; of
    rewrite 2 zero; weights softmax([1, 0] / 1 / 0.04) = (1 - e^-25, e^-25); score = w1 (1, 0) + w2 (0, 1)."""
    from cirbench.contracts.method import Gallery

    fields = [{"multi_caption_opt": ["c", "c"], "multi_gpt-3.5_opt": ["r1", "r2"]}]
    for dataset, expected in (("cirr", [0.9487, 0.3162]), ("circo", [1.0, float(np.exp(-25))])):
        method = ldre_method(dataset)
        batch = query_batch(method, torch.zeros(1, 2), ["x"], fields)
        gallery = Gallery(ids=["a", "b"], images=[None, None], features=torch.eye(2), split=method.split)
        score = method.score(batch, gallery)
        assert score[0].tolist() == pytest.approx(expected, abs=1e-4), dataset
        assert method.config()["ensemble"] == ("mean" if dataset == "cirr" else "relevance")
        # the weights' settings are recorded where they are used
        assert ("topk" in method.config()) == (dataset == "circo")
    forced = ldre_method("cirr")
    forced.ctx.options["ensemble"] = "relevance"
    forced.prepare(forced.split)
    assert forced.config()["ensemble"] == "relevance"


def test_ldre_counts_the_top_5_drops_of_each_query_over_its_own_candidates():
    """circo_generate_test_dict's torch.topk(k=5). Seven one-hot gallery items; caption 1 is
    (6, 5, 4, 3, 2, 1, 0)/sqrt(91) and its rewrite e7, caption 2 is (1, 1, 1, 1, 1, 1, 0)/sqrt(6) and its
    rewrite e6, so the drops are caption 1's entries but the 7th, and 1/sqrt(6) on items 1-5.
    Top 5: sums 20/sqrt(91) = 2.0966 and 5/sqrt(6) = 2.0412 -> softmax((1, .97361) / .04) = (.6592, .3408),
    the score of item 7 and of item 6 (top 4 would give .9666, top 6 .8604).
    On a split whose queries rank their own candidates (GeneCIS), only they count: with candidates
    1, 2, 3, 6, 7 the sums are 16/sqrt(91) = 1.6773 and 3/sqrt(6) = 1.2247 -> (.99882, .00118); CIRR's
    img_set on a whole-gallery split is no such restriction."""
    from cirbench.contracts.method import Gallery

    # an eighth feature axis that no gallery item uses: G (7) and D (8) differ
    vectors = {"c1": [6.0, 5, 4, 3, 2, 1, 0, 0], "c2": [1.0, 1, 1, 1, 1, 1, 0, 0], "r1": [0.0] * 6 + [1.0, 0],
               "r2": [0.0] * 5 + [1.0, 0.0, 0]}
    fields = [{"multi_caption_opt": ["c1", "c2"], "multi_gpt-3.5_opt": ["r1", "r2"]}]
    for scope, subsets, expected in (("gallery", None, (0.6592, 0.3408)), ("gallery", [[0, 1, 2, 5, 6]], (0.6592, 0.3408)),
                                     ("subset", [[0, 1, 2, 5, 6]], (0.99882, 0.00118))):
        method = ldre_method("circo", vectors)
        method.split.scope = scope
        batch = query_batch(method, torch.zeros(1, 8), ["x"], fields)
        batch.subsets = subsets
        gallery = Gallery(ids=list("abcdefg"), images=[None] * 7, features=torch.eye(7, 8), split=method.split)
        score = method.score(batch, gallery)[0].tolist()
        assert (score[6], score[5]) == pytest.approx(expected, abs=1e-4), (scope, subsets)


def seize_on(tmp_path, root, dataset, *extra):
    import colour_encoder

    colour_encoder.register()
    return json.loads(run_cli(tmp_path, "-m", "seize", "--dataset", dataset, "--data", f"{dataset.split(':')[0]}={root}",
                              "--encoder", "colour-test", "--transform", "clip", "-o", "seize.n=1",
                              *extra).stdout)["results"]


def test_seize_reads_the_gpt4o_rewrites_where_the_annotations_carry_them(tmp_path):
    """CIRCO q0 (reference 1, red): the GPT-4o field says "a white one", the GPT-3.5 field "a yellow
    thing". The official datasets.py reads multi_{gpt_version}_opt with gpt_version gpt-4o: white (7)
    ranks first. Without the GPT-4o field the GPT-3.5 one is read: yellow (3) first. The result says
    which field was read."""
    root = F.circo(tmp_path / "circo")
    path = root / "annotations" / "val.json"
    rows = json.loads(path.read_text())
    for row in rows:
        row.update({"multi_caption_opt": ["a blue thing"], "multi_gpt-3.5_opt": ["a yellow thing"],
                    "multi_gpt-4o_opt": ["a white one"]})
    path.write_text(json.dumps(rows))
    (record,) = seize_on(tmp_path, root, "circo:val")
    assert record["method"]["config"]["rewrites_field"] == "multi_gpt-4o_opt"
    assert rankings(tmp_path, "seize")[0][0] == "7"
    for row in rows:
        del row["multi_gpt-4o_opt"]
    path.write_text(json.dumps(rows))
    (record,) = seize_on(tmp_path / "b", root, "circo:val")
    assert record["method"]["config"]["rewrites_field"] == "multi_gpt-3.5_opt"
    assert rankings(tmp_path / "b", "seize")[0][0] == "3"


def test_seize_on_fashioniq_always_reads_the_gpt35_field(tmp_path):
    """FashionIQ's loader hard-codes multi_gpt-3.5_opt, whatever --gpt_version says."""
    root = F.fashioniq(tmp_path / "fiq")
    path = root / "captions" / "cap.dress.val.json"
    rows = json.loads(path.read_text())
    for row in rows:
        row.update({"multi_caption_opt": ["a blue thing"], "multi_gpt-3.5_opt": ["a yellow thing"],
                    "multi_gpt-4o_opt": ["a red thing"]})
    path.write_text(json.dumps(rows))
    (record,) = seize_on(tmp_path, root, "fashioniq:dress")
    assert record["method"]["config"]["rewrites_field"] == "multi_gpt-3.5_opt"


LDRE_SCRIPT = ('for ans in []:\n    sys_prompt = "a system ."\n'
               '    usr_prompt = "image content : {} instruction : {} edited description :".format(cap, rel_cap)\n')


def test_local_generation_uses_the_official_settings(tmp_path, hf_models, monkeypatch):
    """LDRE's and SEIZE's scripts: LAVIS 1.0.2's BLIP-2 OPT captioner prompted "a photo of" (its model
    config), 15 nucleus-sampled captions (top_p 0.9, beams 1); one chat completion per caption at the API's
    default temperature 1 (sampled, seeded here); FashionIQ's instruction rel_caps[0] + rel_caps[1].
    ``rewrite_decoding=greedy`` is the deterministic variant."""
    import colour_encoder
    from cirbench.generation.models import Captioner, Rewriter

    colour_encoder.register()
    seen = {"prompts": [], "decodings": [], "conversations": []}
    caption, complete = Captioner.caption, Rewriter.complete

    def recording_caption(self, images, keys, prompt, decoding, batch_size=8):
        seen["prompts"].append(prompt)
        return caption(self, images, keys, prompt, decoding, batch_size)

    def recording_complete(self, conversations, keys, decoding, batch_size=8):
        seen["decodings"].append(decoding)
        seen["conversations"] += conversations
        return complete(self, conversations, keys, decoding, batch_size)

    monkeypatch.setattr(Captioner, "caption", recording_caption)
    monkeypatch.setattr(Rewriter, "complete", recording_complete)
    root = F.fashioniq(tmp_path / "fiq")
    rows = json.loads((root / "captions" / "cap.dress.val.json").read_text())
    (tmp_path / "reason.py").write_text(LDRE_SCRIPT)
    blip2, llm = hf_models
    opts = [x for m in ("ldre", "seize") for x in (
        "-o", f"{m}.captioner={blip2}", "-o", f"{m}.llm={llm}", "-o", f"{m}.prompts_file={tmp_path / 'reason.py'}",
        "-o", f"{m}.max_new_tokens=4", "-o", f"{m}.n=2")]
    got = {r["method"]["name"]: r for r in json.loads(run_cli(
        tmp_path, "-m", "ldre,seize", "--dataset", "fashioniq:dress", "--data", f"fashioniq={root}", "--encoder",
        "colour-test", "--transform", "clip", *opts).stdout)["results"]}
    assert set(seen["prompts"]) == {"a photo of"}
    assert {(d.sample, d.temperature, d.top_p) for d in seen["decodings"]} == {(True, 1.0, 1.0)}
    c1, c2 = rows[0]["captions"]
    users = [c[1]["content"] for c in seen["conversations"]]
    assert any(u.endswith(f"instruction : {c1 + c2} edited description :") for u in users)
    config = got["seize"]["method"]["config"]
    assert config["caption_prompt"] == "a photo of" and config["caption_decoding"]["top_p"] == 0.9
    assert config["rewrite_decoding"]["sample"] is True and config["rewrite_decoding"]["seed"] == 0
    seen["decodings"].clear()
    run_cli(tmp_path / "g", "-m", "seize", "--dataset", "fashioniq:dress", "--data", f"fashioniq={root}",
            "--encoder", "colour-test", "--transform", "clip", *opts[len(opts) // 2:], "-o",
            "seize.rewrite_decoding=greedy")
    assert {d.sample for d in seen["decodings"]} == {False}


def test_cirevl_on_genecis_focus_attribute_adds_the_reference_image():
    """main.py: for genecis_focus_attribute the query is normalise((normalise(text) + normalise(ref)) / 2);
    text (3, 4) -> (.6, .8), reference (0, 2) -> (0, 1): direction (.3, .9) / |.| = (.3162, .9487). On
    the other tasks the text alone: (.6, .8)."""
    from cirbench.contracts.method import MethodContext, resolve_options
    from cirbench.contracts.registry import methods

    cls = methods.get("cirevl")
    for task, expected in (("focus_attribute", [0.3162, 0.9487]), ("focus_object", [0.6, 0.8])):
        ctx = MethodContext(encoder=FakeEncoder(), text_features=texts_encoder({"edited": [3.0, 4.0]}),
                            options=resolve_options("cirevl", cls.options, {}))
        method = cls(ctx)
        method.split = split_view(dataset="genecis")
        method.split.split = task
        method.split.query_fields = frozenset({"gpt-3.5-turbo"})
        method.prepare(method.split)
        batch = query_batch(method, torch.tensor([[0.0, 2.0]]), ["red"], [{"gpt-3.5-turbo": "edited"}])
        assert normalize(method.encode_queries(batch), dim=-1)[0].tolist() == pytest.approx(expected, abs=1e-4), task


def test_weicom_defaults_are_the_official_ones():
    """rscir evaluate.py: lam 0.5 ("--lambdas" default) and only "... Norm" methods standardise: by hand,
    with v = (1, 0), w = (0, 1) and the gallery e1, e2, (.6, .8):
    s_I = (1, 0, .6), s_T = (0, 1, .8). Weighted Norm: mean/std over the gallery (torch.std, n - 1) then
    the Gaussian CDF, 0.5 each. Average (no "Norm" in the name): (s_I + s_T) / 2 = (.5, .5, .7)."""
    from math import erf, sqrt

    from cirbench.contracts.method import Gallery, MethodContext, resolve_options
    from cirbench.contracts.registry import methods
    from cirbench.errors import RunError

    def cdf(values):
        mean = sum(values) / 3
        std = sqrt(sum((v - mean) ** 2 for v in values) / 2)
        return [0.5 * (1 + erf((v - mean) / (std * sqrt(2)))) for v in values]

    s_i, s_t = [1.0, 0.0, 0.6], [0.0, 1.0, 0.8]
    weighted = [0.5 * a + 0.5 * b for a, b in zip(cdf(s_i), cdf(s_t))]
    cls = methods.get("weicom")
    for given, expected in (({}, weighted), ({"fusion": "average"}, [0.5, 0.5, 0.7]),
                            ({"fusion": "average", "normalize": "true"}, [(a + b) / 2 for a, b in zip(cdf(s_i), cdf(s_t))])):
        ctx = MethodContext(encoder=FakeEncoder(), text_features=texts_encoder({"blue": [0.0, 1.0]}),
                            options=resolve_options("weicom", cls.options, given))
        method = cls(ctx)
        method.split = split_view()
        method.split.prompts["caption"] = "{text}"
        method.prepare(method.split)
        batch = query_batch(method, torch.tensor([[1.0, 0.0]]), ["blue"])
        gallery = Gallery(ids=list("abc"), images=[None] * 3, features=torch.tensor([[1.0, 0], [0, 1.0], [0.6, 0.8]]),
                          split=method.split)
        assert method.score(batch, gallery)[0].tolist() == pytest.approx(expected, abs=1e-5), given
        if not given:
            # the recorded prompt is the split's caption template (FashionIQ's "{c1} and {c2}"), else its text
            assert method.config()["prompt"] == "{text}"
            method.split.prompts["caption"] = "{c1} and {c2}"
            assert method.config()["prompt"] == "{c1} and {c2}"
            del method.split.prompts["caption"]
            assert method.config()["prompt"] == method.split.prompts["text"]
            method.split.prompts["caption"] = "{text}"
            # CIRR's queries carry their img_set, but its split ranks the whole gallery: the spread is
            # still the gallery's; only a subset-scoped split (GeneCIS) standardises over the candidates
            batch.subsets = [[0, 2]]
            assert method.score(batch, gallery)[0].tolist() == pytest.approx(expected, abs=1e-5)
            method.split.scope = "subset"
            two = [0.5 * (1 + erf(z / sqrt(2))) for z in (0.70711, -0.70711)]  # (1, .6) and (0, .8): z = +-1/sqrt(2)
            scored = method.score(batch, gallery)[0].tolist()
            assert [scored[0], scored[2]] == pytest.approx([0.5 * two[0] + 0.5 * two[1]] * 2, abs=1e-5)
            batch.subsets = [[0, 1, 2]]  # three candidates: the whole gallery's spread again
            assert method.score(batch, gallery)[0].tolist() == pytest.approx(expected, abs=1e-5)
            batch.subsets = [[1]]
            with pytest.raises(RunError, match="fewer than two"):
                method.score(batch, gallery)
            method.split.scope = "gallery"


# -- LinCIR --------------------------------------------------------------------------------------------

def pil_clip_image_processor(**kwargs):
    """transformers' CLIPImageProcessor as LinCIR's era had it (PIL resizing): 4.x's class, or 5.x's
    PIL-backed variant (5.x's default class resizes tensors with torchvision, another result)."""
    try:
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as cls
    except ImportError:
        from transformers import CLIPImageProcessor as cls
    return cls(**kwargs)


def test_hf_clip_transform_is_hugging_faces_clip_image_processor(tmp_path, tiny_encoder):
    """LinCIR's preprocessing is transformers' CLIPImageProcessor (resize the short side, crop with
    offsets rounded down). A 35 x 32 image: the crop starts at column (35 - 32) // 2 = 1 there, at
    round(1.5) = 2 in torchvision's CenterCrop; a CMYK image is converted first."""
    from cirbench.protocol.images import load_image
    from cirbench.protocol.transforms import build

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (32, 35, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(rng.integers(0, 255, (45, 33, 4), dtype=np.uint8), "CMYK").save(tmp_path / "tall.jpg")
    hf = pil_clip_image_processor(crop_size={"height": 32, "width": 32}, do_center_crop=True, do_convert_rgb=True,
                            do_normalize=True, do_rescale=True, do_resize=True, image_mean=[0.5] * 3,
                            image_std=[0.5] * 3, resample=3, size={"shortest_edge": 32})
    transform = build(tiny_encoder.base_preprocess, "hf-clip")
    for name in ("wide.png", "tall.jpg"):
        expected = torch.from_numpy(hf(Image.open(tmp_path / name), return_tensors="np")["pixel_values"][0])
        got = transform(load_image(tmp_path / name, keep_mode=True))
        assert torch.allclose(got, expected, atol=1e-5), name
    clip = build(tiny_encoder.base_preprocess, "clip")(load_image(tmp_path / "wide.png", keep_mode=True))
    assert not torch.allclose(clip, transform(load_image(tmp_path / "wide.png", keep_mode=True)), atol=1e-3)
    half = build(tiny_encoder.base_preprocess, "hf-clip+fp16")(load_image(tmp_path / "wide.png", keep_mode=True))
    assert torch.equal(half, transform(load_image(tmp_path / "wide.png", keep_mode=True)).half().float())
    # +fp16 on the encoder's own transform keeps its crop (rounded to nearest): only the pixels are rounded
    clip_half = build(tiny_encoder.base_preprocess, "clip+fp16")(load_image(tmp_path / "wide.png", keep_mode=True))
    assert torch.equal(clip_half, clip.half().float())


def test_the_floor_centre_crop_pads_a_short_side_as_transformers_does():
    """An image shorter than the crop on one side or both (odd differences: 32 - 21 = 11 rows, 5 and 6)
    is padded as transformers' center_crop pads it, the larger half first; torchvision's centre crop
    would put it last, shifting the image by a row."""
    from transformers.image_transforms import center_crop

    from cirbench.protocol.transforms import FloorCenterCrop

    rng = np.random.default_rng(5)
    for height, width in ((21, 40), (40, 21), (21, 19), (50, 45)):
        pixels = rng.integers(1, 255, (height, width, 3), dtype=np.uint8)  # no zero: the padding shows
        want = center_crop(pixels, (32, 32), data_format="channels_last")
        got = np.asarray(FloorCenterCrop(32)(Image.fromarray(pixels)))
        assert got.shape == (32, 32, 3) and np.array_equal(got, want), (height, width)


def test_lincir_by_default_runs_as_its_official_validate(tmp_path, tiny_dir, tiny_encoder, monkeypatch):
    """The official pipeline re-implemented here: CLIPImageProcessor pixels; the CLIP loaded as float16
    and cast to float32 (its state dict rounded by hand); the gallery from float32 pixels, phi's input
    from the reference's pixels cast to half; every $ of "a photo of $ that {caption}" injected."""
    import open_clip

    from cirbench.contracts.encoder import load_encoder
    from test_checkpoints import searle_ckpt

    import cirbench.engine.ranking as ranking

    root, rows = circo_tree(tmp_path / "circo", n_texts=1)
    state = searle_ckpt(tmp_path / "phi.pt", tiny_encoder.embed_dim, tiny_encoder.token_width)
    seen = {}
    rank_vectors = ranking.rank_vectors

    def recording(queries, gallery, *args, **kwargs):  # the vectors the engine ranks with
        seen.update(queries=queries.clone(), gallery=gallery.clone())
        return rank_vectors(queries, gallery, *args, **kwargs)

    monkeypatch.setattr(ranking, "rank_vectors", recording)
    run_cli(tmp_path, "-m", "lincir", "--checkpoint", f"lincir={tmp_path / 'phi.pt'}", "--dataset", "circo:val",
            "--data", f"circo={root}", "--encoder", f"local-dir:{tiny_dir}", "--feature-dtype", "fp32")

    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{tiny_dir}")
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    model.eval()
    hf = pil_clip_image_processor(crop_size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                  resample=3, size={"shortest_edge": 32})
    ids = [str(i) for i in range(1, 8)]

    def pixels(i):
        image = Image.open(root / "COCO2017_unlabeled" / "unlabeled2017" / f"{int(i):012d}.jpg")
        return torch.from_numpy(hf(image, return_tensors="np")["pixel_values"][0])

    gelu = torch.nn.functional.gelu
    rounded = load_encoder(f"local-dir:{tiny_dir}").with_weights("fp16")  # its text tower, for the injection
    with torch.no_grad():
        index = normalize(model.encode_image(torch.stack([pixels(i) for i in ids])), dim=-1)
        refs = model.encode_image(torch.stack([pixels(r["reference_img_id"]).half().float() for r in rows]))
        h = gelu(refs @ state["layers.0.weight"].T + state["layers.0.bias"])
        h = gelu(h @ state["layers.3.weight"].T + state["layers.3.bias"])
        tokens = h @ state["layers.6.weight"].T + state["layers.6.bias"]
        prompts = [f"a photo of $ that {r['relative_caption']}" for r in rows]
        query = normalize(rounded.encode_texts_with_pseudo(prompts, tokens, "$", every_occurrence=True), dim=-1)
    # the rounding habits change features by about 1e-3: compare the vectors themselves
    assert torch.allclose(seen["gallery"], index, atol=2e-6)
    assert torch.allclose(seen["queries"], query, atol=2e-6)
    expected = [[ids[j] for j in torch.argsort(s, descending=True).tolist()] for s in query @ index.T]
    assert rankings(tmp_path, "lincir") == expected
    # the text tower used above is the one rounded by hand
    ref_text = model.encode_text(open_clip.get_tokenizer(f"local-dir:{tiny_dir}")(["a red dog"])).float()
    assert torch.allclose(rounded.encode_texts(["a red dog"]), ref_text, atol=1e-5)


def test_lincir_clean_variant_is_an_option(tmp_path, tiny_dir, tiny_encoder):
    from test_checkpoints import searle_ckpt

    root, _rows = circo_tree(tmp_path / "circo", n_texts=1)
    searle_ckpt(tmp_path / "phi.pt", tiny_encoder.embed_dim, tiny_encoder.token_width)
    (record,) = json.loads(run_cli(
        tmp_path, "-m", "lincir", "--checkpoint", f"lincir={tmp_path / 'phi.pt'}", "--dataset", "circo:val", "--data",
        f"circo={root}", "--encoder", f"local-dir:{tiny_dir}", "-o", "lincir.official_preprocessing=false").stdout)[
        "results"]
    assert record["method"]["transform"] == "clip" and record["method"]["reference_transform"] == "clip"
    assert record["method"]["weights"] == "loaded" and "weights_rounding" not in record["encoder"]["identity"]


# -- CIRCO's metric, GeneCIS's images, decoded modes -------------------------------------------------

def test_circo_map_counts_a_duplicated_ground_truth_as_listed(tmp_path):
    """miccunifi/CIRCO src/evaluation.py: AP@K = sum(precisions[:K]) / min(len(gt_img_ids), K). Query 0's
    gt_img_ids [5, 3, 5]: with the colour test encoder the reds 1, 2, 5 rank first (5 at 3), yellow 3 at
    4: AP@5 = (1/3 + 2/4) / min(3, 5) = 5/18, not / 2 as with duplicates removed. q1 (reference 4, blue;
    ground truth 7, white): blue first (the reference is kept), white second (cos .63): AP@5 = 1/2."""
    import colour_encoder

    colour_encoder.register()
    root = F.circo(tmp_path / "circo")
    path = root / "annotations" / "val.json"
    rows = json.loads(path.read_text())
    rows[0]["gt_img_ids"] = [5, 3, 5]
    path.write_text(json.dumps(rows))
    (record,) = json.loads(run_cli(tmp_path, "-m", "image-only", "--dataset", "circo:val", "--data",
                                   f"circo={root}", "--encoder", "colour-test", "--transform", "clip").stdout)["results"]
    assert record["metrics"]["mAP@5"] == pytest.approx(100 * (5 / 18 + 1 / 2) / 2)
    assert record["metrics"]["R@5"] == 100.0  # the first listed ground truth, 5, at rank 3


def official_expand2square(image, bg):
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    out = Image.new(image.mode, (side, side), bg)
    out.paste(image, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
    return out


def test_genecis_crops_and_pads_in_the_decoded_mode_then_the_transform_converts(tmp_path, tiny_encoder):
    """vaw_dataset.load_cropped_image: Image.open (no conversion), crop the dilated box, expand2square
    with (0,) for 'L' and (0, 0, 0) otherwise; then CLIP's preprocess resizes and crops in that mode and
    converts to RGB last. Checked on a CMYK JPEG and an 'L' JPEG against those steps written here."""
    from cirbench.protocol.images import ImageRef, dilated_box
    from cirbench.storage.pixels import ImageFiles

    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (30, 50, 4), dtype=np.uint8), "CMYK").save(tmp_path / "c.jpg", quality=95)
    Image.fromarray(rng.integers(0, 255, (30, 50), dtype=np.uint8), "L").save(tmp_path / "l.jpg", quality=95)
    box = (20, 4, 10, 8)
    for name in ("c.jpg", "l.jpg"):
        raw = Image.open(tmp_path / name)
        x, y, w, h = box
        left, top = max(0, x - 0.7 * w), max(0, y - 0.7 * h)
        crop = raw.crop((left, top, min(50, left + 1.7 * w), min(30, top + 1.7 * h)))
        assert (left, top, min(50, left + 1.7 * w), min(30, top + 1.7 * h)) == dilated_box((50, 30), x, y, w, h, 0.7)
        expected = tiny_encoder.preprocess(official_expand2square(crop, (0,) if raw.mode == "L" else (0, 0, 0)))
        ref = ImageRef(tmp_path / name, (("dilated_crop", *box, 0.7), ("pad_square", 0, 0, 0)))
        _i, got, err = ImageFiles([ref], tiny_encoder.preprocess)[0]
        assert err is None and torch.allclose(got, expected, atol=1e-6), name


def test_clip_and_targetpad_get_the_decoded_mode_as_the_official_transforms(tmp_path, tiny_encoder):
    """OpenAI's/open_clip's transform resizes and crops a palette or CMYK image in its own mode and
    converts to RGB afterwards (a palette image is even resized with nearest-neighbour sampling);
    TargetPad pads it in its own mode with 0 (in CMYK: white). cirbench gives the transform the decoded
    image, so the pixels equal the official transform applied to Image.open(path)."""
    from cirbench.storage.pixels import ImageFiles
    from cirbench.protocol.transforms import build

    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 255, (20, 48, 4), dtype=np.uint8), "CMYK").save(tmp_path / "c.jpg", quality=95)
    Image.fromarray(rng.integers(0, 255, (20, 48, 3), dtype=np.uint8)).convert("P").save(tmp_path / "p.png")
    for name in ("c.jpg", "p.png"):
        for kind, official in (("clip", official_transform(32, False)), ("targetpad", official_transform(32, True))):
            expected = official(Image.open(tmp_path / name))
            _i, got, err = ImageFiles([tmp_path / name], build(tiny_encoder.base_preprocess, kind))[0]
            assert err is None and torch.allclose(got, expected, atol=1e-6), (name, kind)
            converted_first = official(Image.open(tmp_path / name).convert("RGB"))
            assert not torch.allclose(converted_first, expected, atol=1e-3), (name, kind)


def test_data_prepare_help_names_the_default_place():
    result = CliRunner().invoke(app, ["data", "prepare", "--help"], env={"COLUMNS": "200"})
    assert "Where to write [default: under the cache; the dataset folder is never written]" in result.output
