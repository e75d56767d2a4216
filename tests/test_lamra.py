"""LamRA-Ret (issue 34) on a tiny random Qwen2-VL saved as transformers 4.45 saved it (flat config,
``visual.*``/``model.*`` weight names, an embedding row for ``<emb>``) with a processor folder like
Qwen2-VL-7B-Instruct's (a byte-level tokenizer, so every character of a prompt reaches the model; its
chat template): the qwen2-vl kind against LamRA's evaluation transcribed in tests/lamra_reference.py, on
non-square noise images above, within and below LamRA's pixel bounds; the method's rankings on GeneCIS
(the per-task instruction) and CIRCO trees against that pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import lamra_reference as R
import real_fixtures as F
from cirbench.errors import DataError
from hf_models import tiny_qwen2_vl


def noise(width, height, seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


IMAGES = [noise(70, 30, 1), noise(700, 500, 2), noise(90, 130, 3), noise(20, 20, 4), noise(150, 60, 5)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return tiny_qwen2_vl(tmp_path_factory.mktemp("lamra"))


@pytest.fixture(scope="module")
def official(folders):
    """LamRA's model and processor as eval_*.py loads them, <emb> added by add_embed_token."""
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    model_dir, processor_dir = folders
    model = Qwen2VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(processor_dir)
    return model, processor, R.add_embed_token(processor.tokenizer, model)


@pytest.fixture(scope="module")
def encoder(folders):
    from cirbench.contracts.encoder import load_encoder

    model_dir, processor_dir = folders
    return load_encoder(f"qwen2-vl:{model_dir}?processor={processor_dir}")


def test_prompts_are_the_chat_template_over_lamras_messages(official):
    from cirbench.methods.lamra import ATTRIBUTES, candidate_prompt, query_prompt

    _, processor, _ = official

    def rendered(msgs):
        return processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)

    image = IMAGES[0]
    assert query_prompt("is red") == rendered(R.messages(R.query_text("is red"), image))
    assert query_prompt("is red", ATTRIBUTES) == rendered(R.messages(R.query_text("is red", "focus_attribute"), image))
    assert candidate_prompt() == rendered(R.messages(image=image))


def test_lamras_pixel_bounds_by_hand():
    """30 x 70 (h x w) rounds to 28 x 56 = 1,568 pixels, under 4 x 28^2: scaled by sqrt(3136 / 2100) and
    ceiled to 56 x 112. 42 x 70 rounds halves to even (1.5 -> 2, 2.5 -> 2): 56 x 56, not 56 x 84.
    500 x 700 = 350,000 pixels, over 300 x 28^2: floored to 392 x 560."""
    from cirbench.encoders.qwen2_vl import LamraResize, lamra_size

    assert lamra_size(30, 70) == (56, 112)
    assert lamra_size(42, 70) == (56, 56)
    assert lamra_size(500, 700) == (392, 560)
    for h in range(10, 900, 37):
        for w in (13, 28, 42, 70, 333, 1000):
            assert lamra_size(h, w) == R.smart_resize(h, w), (h, w)
    assert LamraResize()(IMAGES[1]).size == (560, 392)
    # 8,200 x 41: 41 rounds to 28, 8,200 to 8,204 (229,712 pixels, within the bounds), a ratio of 293
    # that LamRA clamps to 200 x 28 = 5,600; an aspect ratio of 200 passes, one above it is refused
    assert lamra_size(8200, 41) == (5600, 28) and lamra_size(41, 8200) == (28, 5600)
    assert lamra_size(5600, 28) == (5600, 28)
    # 11,228 x 57 rounds to 11,228 x 56, a ratio of 200.5 (within 10^6 pixels): clamped to 11,200
    assert lamra_size(11228, 57, max_pixels=10**6) == (11200, 56)
    assert lamra_size(57, 11228, max_pixels=10**6) == (56, 11200)
    with pytest.raises(DataError, match="aspect ratio exceeds 200"):
        lamra_size(8201, 41)


def test_the_processors_own_resize_is_4_45s():
    """After LamRA's resize the processor's smart_resize (4.45.2's: no floor at the factor, an error
    below it) changes nothing; on any other size it is 4.45.2's, bounds and all."""
    from cirbench.encoders.qwen2_vl import processor_size

    for h in (28, 29, 41, 42, 70, 333, 1000, 4000, 9000):
        for w in (28, 55, 56, 700, 3001, 5000):
            if max(h, w) / min(h, w) <= 200:
                assert processor_size(h, w, 28, 3136, 12845056) == R.processor_smart_resize_445(h, w, 28, 3136,
                                                                                                12845056), (h, w)
                assert processor_size(h, w, 28, 10000, 200000) == R.processor_smart_resize_445(h, w, 28, 10000,
                                                                                                200000), (h, w)
    assert processor_size(4000, 5000, 28, 3136, 12845056) == (3192, 4004)
    with pytest.raises(DataError, match="smaller than"):
        processor_size(27, 500, 28, 3136, 12845056)
    with pytest.raises(DataError, match="aspect ratio exceeds 200"):
        processor_size(28, 5700, 28, 3136, 12845056)


def test_pixels_are_the_qwen2_vl_processors(folders, encoder):
    """LamRA-resized images as transformers' processor patches them; an image of another size resized
    first, as the PIL processor (4.45's way) does; a processor lacking a setting is one line."""
    from transformers import AutoImageProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from cirbench.encoders.qwen2_vl import image_settings, pixels_445

    processor = AutoImageProcessor.from_pretrained(folders[1])
    for image in IMAGES:
        resized = encoder.preprocess(image)
        got, grid = pixels_445(resized, encoder.image_config)
        want = processor(images=[resized], return_tensors="pt")
        assert list(want["image_grid_thw"][0]) == list(grid)
        assert torch.allclose(got, want["pixel_values"], atol=1e-6)
    config = processor.to_dict()
    pil = Qwen2VLImageProcessorPil(**{k: v for k, v in config.items() if k != "image_processor_type"})
    for odd, size in ((noise(100, 61, 7), (1, 4, 8)), (noise(61, 41, 8), (1, 4, 6))):  # shrunk, grown
        got, grid = pixels_445(odd, encoder.image_config)
        want = pil(images=[odd], return_tensors="pt")
        assert grid == size and torch.equal(got, want["pixel_values"])
    assert image_settings({**config, "min_pixels": 3136, "max_pixels": 12845056, "size": None}, "p")["max_pixels"] \
        == 12845056
    with pytest.raises(DataError, match="p: its image processor has no merge_size"):
        image_settings({k: v for k, v in config.items() if k != "merge_size"}, "p")


def test_the_encoder_is_lamras_forward(official, encoder):
    """Queries and candidates, one batch of mixed lengths against the official pipeline one at a time."""
    from cirbench.methods.lamra import candidate_prompt, query_prompt

    model, processor, emb = official
    captions = ["is red and shiny", "has two of them, larger", "x", "is a dog", "same but at night"]
    got = torch.nn.functional.normalize(encoder.embed([query_prompt(c) for c in captions],
                                                      [encoder.preprocess(im) for im in IMAGES]), dim=-1)
    for row, caption, image in zip(got, captions, IMAGES):
        want = R.embed(model, processor, emb, [R.messages(R.query_text(caption), image)])[0]
        assert torch.allclose(row, want, atol=1e-5), (caption, image.size)
    view = encoder.with_transform("prompt:" + candidate_prompt())
    got = torch.nn.functional.normalize(view.encode_images([view.preprocess(im) for im in IMAGES]), dim=-1)
    want = R.embed(model, processor, emb, [R.messages(image=im) for im in IMAGES])  # one padded batch
    assert torch.allclose(got, want, atol=1e-5)


def test_the_protocol_details_are_visible_on_this_model(official, encoder):
    """What the comparison above would catch: Qwen2-VL's own 3-D image positions (its forward without
    position ids) and reading the prompt's last token instead of the one before <emb> each change the
    embedding."""
    from cirbench.methods.lamra import query_prompt

    model, processor, emb = official
    msgs = [R.messages(R.query_text("is red"), IMAGES[2])]
    lamra = R.embed(model, processor, emb, msgs)[0]
    texts = [processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs]
    inputs = processor(text=texts, images=[R.fetch_image(IMAGES[2])], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True, return_dict=True).hidden_states[-1][0]
    at = int((inputs["input_ids"][0] == emb).nonzero()[0])
    mrope = torch.nn.functional.normalize(hidden[at - 1], dim=-1)
    assert (mrope - lamra).abs().max() > 1e-3
    last = torch.nn.functional.normalize(hidden[-1], dim=-1)
    assert (last - lamra).abs().max() > 1e-3
    ours = torch.nn.functional.normalize(encoder.embed([query_prompt("is red")], [encoder.preprocess(IMAGES[2])]), dim=-1)
    assert torch.allclose(ours[0], lamra, atol=1e-5)


def _evaluate(tmp_path, folders, dataset, root, splits):
    import cirbench

    model_dir, processor_dir = folders
    ev = cirbench.evaluate(methods=["lamra"], datasets=[f"{dataset}:{s}" for s in splits], data={dataset: str(root)},
                           options=[f"lamra.model={model_dir}", f"lamra.processor={processor_dir}"], workers=0,
                           cache_dir=tmp_path / "cache", results_dir=tmp_path / "r", batch_size=3)
    for cell in ev.cells:
        assert cell.status == "computed", cell.error
    return ev


def _noisy(paths, seed=10):
    """Overwrite a fixture's flat images with noise of several non-square sizes, in their formats."""
    sizes = [(70, 45), (45, 70), (120, 40), (33, 57), (64, 64), (200, 90)]
    for i, path in enumerate(sorted(paths)):
        w, h = sizes[i % len(sizes)]
        if "vg" in path.parts:  # the GeneCIS boxes lie within 40 x 30
            w, h = 40 + i, 30 + i
        noise(w, h, seed + i).save(path, quality=95)


def test_lamra_on_genecis_as_eval_genecis(tmp_path, folders, official):
    """Each task's queries against [target] + gallery as eval_genecis.py scores them; focus_attribute
    with its own instruction, the other three with the 'described changes' one."""
    from cirbench.contracts.registry import datasets
    from cirbench.protocol.images import load_image
    from cirbench.storage import results

    root = F.genecis(tmp_path / "genecis")
    _noisy(list(root.rglob("*.jpg")))
    tasks = ("focus_attribute", "change_attribute", "focus_object", "change_object")
    ev = _evaluate(tmp_path, folders, "genecis", root, tasks)
    model, processor, emb = official
    for cell in ev.cells:
        task = cell.record.dataset.split
        split = datasets.get("genecis")(root).load(task)
        image = {k: load_image(v, keep_mode=False) for k, v in split.images.items()}
        queries = R.embed(model, processor, emb, [R.messages(R.query_text(q.text, task), image[q.reference])
                                                  for q in split.queries])
        ranks, galleries = [], []
        for q, qf in zip(split.queries, queries):
            g = R.embed(model, processor, emb, [R.messages(image=image[m]) for m in q.subset])
            galleries.append(g)
            order = torch.argsort(qf @ g.T, descending=True, stable=True).tolist()
            ranks.append(order.index(0) + 1)  # 1-based
        out = results.load_outcomes(results.read(cell.path))
        assert out.views["subset"][2].tolist() == ranks, task
        recall = R.genecis_recall(queries, galleries)
        assert cell.record.metrics == pytest.approx({f"R@{k}": 100 * v for k, v in recall.items()}), task
        want = R.query_text("{text}", task).split(" {text}")[0]
        assert cell.record.method.config["instruction"] == want
        assert cell.record.method.config["path"] == "official"


def test_lamra_on_circo_keeps_the_reference_as_eval_circo(tmp_path, folders, official):
    """Every image of image_info_unlabeled2017.json in its order, the reference kept; mAP@k as
    eval_circo.py computes it from the top 50."""
    from cirbench.contracts.registry import datasets
    from cirbench.protocol.images import load_image
    from cirbench.storage import results

    root = F.circo(tmp_path / "circo")
    _noisy(list((root / "COCO2017_unlabeled").rglob("*.jpg")))
    (cell,) = _evaluate(tmp_path, folders, "circo", root, ["val"]).cells
    model, processor, emb = official
    split = datasets.get("circo")(root).load("val")
    info = json.loads((root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json").read_text())
    names = [str(i["id"]) for i in info["images"]]
    image = {k: load_image(v, keep_mode=False) for k, v in split.images.items()}
    gallery = R.embed(model, processor, emb, [R.messages(image=image[n]) for n in names])
    rows = json.loads((root / "annotations" / "val.json").read_text())
    queries = R.embed(model, processor, emb, [R.messages(R.query_text(r["relative_caption"]),
                                                         image[str(r["reference_img_id"])]) for r in rows])
    out = results.load_outcomes(results.read(cell.path))
    ap5 = []
    for i, (row, qf) in enumerate(zip(rows, queries)):
        order = torch.argsort(qf @ gallery.T, descending=True, stable=True)
        assert [out.gallery[j] for j in out.views["gallery"][0][i][:len(names)]] == [names[j] for j in order]
        labels = torch.tensor(np.isin(np.array(names)[order], [str(x) for x in row["gt_img_ids"]]), dtype=torch.uint8)
        precisions = torch.cumsum(labels, 0) * labels / torch.arange(1, len(labels) + 1)
        ap5.append(float(precisions[:5].sum()) / min(len(row["gt_img_ids"]), 5))
    assert cell.record.metrics["mAP@5"] == pytest.approx(100 * np.mean(ap5))
    assert str(split.queries[0].reference) in names


def test_lamra_elsewhere_says_it_takes_the_circo_path(tmp_path, folders):
    root = F.cirr(tmp_path / "cirr")
    (cell,) = _evaluate(tmp_path, folders, "cirr", root, ["val"]).cells
    config = cell.record.method.config
    assert "no zero-shot path for cirr" in config["path"]
    assert config["processor"] == str(folders[1]) and config["pixels"] == [3136, 235200]


def test_bad_settings_and_prompts_of_the_kind_are_one_line(folders, encoder):
    from cirbench.contracts.encoder import load_encoder
    from cirbench.errors import UsageError

    model_dir, processor_dir = folders
    with pytest.raises(UsageError, match="min_pixels=N"):
        load_encoder(f"qwen2-vl:{model_dir}?pixels=5")
    with pytest.raises(UsageError, match="exceeds max_pixels"):
        load_encoder(f"qwen2-vl:{model_dir}?processor={processor_dir}&min_pixels=9000&max_pixels=3000")
    same = load_encoder(f"qwen2-vl:{model_dir}?processor={processor_dir}&min_pixels=3136&max_pixels=3136")
    # equal bounds are allowed; 500 x 700 over 3,136 pixels floors to 28 x 56 (LamRA's max branch may end
    # under min_pixels)
    assert same.preprocess(IMAGES[1]).size == (56, 28) and same.identity["model_name"] == "lamra-ret"
    pad = "<|vision_start|><|image_pad|><|vision_end|>"
    with pytest.raises(UsageError, match="2 <\\|image_pad\\|> token"):
        encoder.embed([f"{pad}{pad} two <emb>."], [encoder.preprocess(IMAGES[0])])
    with pytest.raises(UsageError, match="1 <\\|image_pad\\|> token"):
        encoder.embed([f"{pad} none <emb>."], [None])
    with pytest.raises(UsageError, match="begins with <emb>"):
        encoder.embed(["<emb>. after"], [None])
    assert encoder.embed(["no image, read at <emb>."], [None]).shape == (1, encoder.embed_dim)
    # the token before the first <emb> (argmax finds the first), whatever follows
    first, twice = encoder.embed(["read here <emb> not <emb>.", "read here "], [None, None])
    assert torch.allclose(first, twice, atol=1e-6)
    with pytest.raises(UsageError, match="REPO_OR_FOLDER"):
        load_encoder(f"qwen2-vl:{model_dir}?processor=@abc")
    pinned = load_encoder(f"qwen2-vl:{model_dir}?processor={processor_dir}@r1")
    assert pinned.prompt is None and pinned.identity["requested_processor_revision"] == "r1"
    assert pinned.identity["random_weights"] is False and pinned.identity["kind"] == "qwen2-vl"
    with pytest.raises(UsageError, match="needs the prompt its gallery images are encoded under"):
        pinned.encode_images([pinned.preprocess(IMAGES[0])])



def test_the_gallery_is_encoded_once_per_model_and_prompt(tmp_path, folders, monkeypatch):
    """A second run (results rewritten) reads every gallery feature from the content-keyed cache: the
    model, its revision, the candidate prompt and the pixel bounds key them."""
    import cirbench
    from cirbench.encoders.qwen2_vl import Qwen2VLEmbedder

    root = F.circo(tmp_path / "circo")
    encoded = []
    original = Qwen2VLEmbedder.encode_images

    def counting(self, images):
        encoded.append(len(images))
        return original(self, images)

    monkeypatch.setattr(Qwen2VLEmbedder, "encode_images", counting)
    model_dir, processor_dir = folders
    for overwrite in (False, True):
        ev = cirbench.evaluate(methods=["lamra"], datasets=["circo:val"], data={"circo": str(root)},
                               options=[f"lamra.model={model_dir}", f"lamra.processor={processor_dir}"], workers=0,
                               cache_dir=tmp_path / "cache", results_dir=tmp_path / "r", overwrite=overwrite)
        assert [c.status for c in ev.cells] == ["computed"]
        if not overwrite:
            assert sum(encoded) == 7  # the seven images of image_info_unlabeled2017.json
            encoded.clear()
    assert encoded == []


@pytest.mark.parametrize("dataset,text", [("circo", "is in a kitchen"), ("genecis", "is in a kitchen"),
                                          ("cirr", "a photo that is in a kitchen")])
def test_the_official_datasets_take_the_raw_text(encoder, dataset, text):
    """CIRCO's relative caption and GeneCIS's condition go into the prompt as the annotation has them,
    whatever caption prompt the split carries; elsewhere the split's caption prompt is used."""
    from helpers import method_for, query_batch

    method = method_for("lamra", encoder, dataset=dataset, prompts={"caption": "a photo that {text}"})
    batch = query_batch(method, torch.zeros(1, encoder.embed_dim), ["is in a kitchen"])
    assert method._texts(batch) == [text]


def test_the_model_the_method_brings_is_named_by_its_options():
    """The model, its revision and the processor name the encoder (so they never share a table row or a
    cache entry) rather than the method's setting."""
    from cirbench.contracts.registry import methods

    lamra = methods.get("lamra")
    assert lamra.own_encoder({}, None) == "qwen2-vl:code-kunkun/LamRA-Ret?processor=Qwen/Qwen2-VL-7B-Instruct"
    assert lamra.own_encoder({"model": "/m", "revision": "abc", "processor": "/p@r1"}, None) == \
        "qwen2-vl:/m@abc?processor=/p@r1"
    assert not any(lamra.options[k].in_setting for k in ("model", "revision", "processor"))
    assert lamra.external_weights
