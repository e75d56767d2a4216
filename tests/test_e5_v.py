"""E5-V (issue 34) on a tiny random LLaVA-NeXT in the released folder layout (llama3 chat tokens, the
added <image> token, grid pinpoints of non-square tile grids): the llava-next encoder against transformers'
own forward -- today's tile layout as transformers lays it out, the pinned 4.41.2 layout with that
version's two lines put back --, and the method's rankings against a pipeline written from the official
retrieval.py."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import real_fixtures as F
from hf_models import tiny_llava_next


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return tiny_llava_next(tmp_path_factory.mktemp("llava") / "e5v")


@pytest.fixture(scope="module")
def hf(llava_dir):
    from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

    model = LlavaNextForConditionalGeneration.from_pretrained(llava_dir, dtype=torch.float32).eval()
    return model, LlavaNextProcessor.from_pretrained(llava_dir)


IMAGES = [Image.new("RGB", (70, 30), (200, 10, 10)), Image.new("RGB", (30, 70), (10, 200, 10)),
          Image.new("RGB", (40, 40), (10, 10, 200)), Image.new("RGB", (8, 8), (200, 200, 10)),
          Image.new("RGB", (61, 20), (200, 100, 50))]


def transformers_forward(model, processor, prompt, image, n_image_tokens, pixels=None):
    """What transformers' own LlavaNextForConditionalGeneration computes for one prompt and image, with
    the <image> token repeated as many times as the image has features (the merge of 4.41, where one
    <image> token became all of them); ``pixels``: (pixel values, (height, width)) from another processor
    (4.41.2's, reproduced), else the installed processor's."""
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    ids = []
    for i in tok(prompt)["input_ids"]:
        ids += [i] * (n_image_tokens if i == image_id else 1)
    if pixels is None:
        inputs = processor.image_processor([image], return_tensors="pt")
        values, sizes = inputs["pixel_values"], inputs["image_sizes"]
    else:
        values, sizes = pixels[0][None], torch.tensor([pixels[1]])
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    pixel_values=values, image_sizes=sizes, output_hidden_states=True, return_dict=True)
    return out.hidden_states[-1][:, -1, :]


def forward_as(encoder, model, processor, prompt, image):
    """transformers' forward on the pixels the encoder's processor gives (4.41.2's for tiles=pinned)."""
    pixels = encoder.pixels(image) if encoder.tiles == "pinned" else None
    return transformers_forward(model, processor, prompt, image, len(encoder.image_features(image)), pixels)


def unpad_441(tensor, original_size):
    """modeling_llava_next.unpad_image as 4.41.2 (and 4.45.2) wrote it: the new size truncated with int()."""
    original_height, original_width = original_size
    current_height, current_width = tensor.shape[1:]
    if original_width / original_height > current_width / current_height:
        new_height = int(original_height * (current_width / original_width))
        padding = (current_height - new_height) // 2
        return tensor[:, padding: current_height - padding, :]
    new_width = int(original_width * (current_height / original_height))
    padding = (current_width - new_width) // 2
    return tensor[:, :, padding: current_width - padding]


def pin_441(monkeypatch):
    """transformers 4.41.2's pack_image_features, as written there: the grid shape assigned as
    ``num_patch_width, num_patch_height = get_anyres_image_grid_shape(...)`` (today: height, width) and
    unpad_image's new size truncated with int() (today: rounded to 7 places first)."""
    import transformers.models.llava_next.modeling_llava_next as modeling

    today = modeling.get_anyres_image_grid_shape
    monkeypatch.setattr(modeling, "get_anyres_image_grid_shape", lambda *a, **k: tuple(reversed(today(*a, **k))))
    monkeypatch.setattr(modeling, "unpad_image", unpad_441)


@pytest.mark.parametrize("tiles", ["fixed", "pinned"])
def test_the_encoder_is_transformers_forward_with_its_tile_layout(llava_dir, hf, monkeypatch, tiles):
    from cirbench.contracts.encoder import load_encoder
    from cirbench.methods.e5_v import GENERIC_QUERY, chat

    from cirbench.encoders.llava_next import pixels_441

    encoder = load_encoder(f"llava-next:{llava_dir}?tiles={tiles}")
    model, processor = hf
    image = Image.new("RGB", (61, 20), (200, 100, 50))  # an odd padding: 4.41.2 leaves the grid a row short
    ours = pixels_441(image, processor.image_processor.to_dict())[0]
    today = processor.image_processor([image], return_tensors="pt")["pixel_values"][0][:len(ours)]
    assert torch.equal(encoder.pixels(image)[0], ours if tiles == "pinned" else today)
    assert not torch.allclose(ours, today, atol=1e-3)  # 4.41.2's tiles differ from today's on this image
    if tiles == "pinned":
        pin_441(monkeypatch)
    prompt = chat(GENERIC_QUERY.replace("<sent>", "is red and has long sleeves"))
    got = encoder.embed([prompt] * len(IMAGES), IMAGES)  # one left-padded batch
    for image, row in zip(IMAGES, got):
        want = forward_as(encoder, model, processor, prompt, image)[0]
        assert torch.allclose(row, want, atol=1e-5), (tiles, image.size)


def test_the_pinned_layout_differs_on_non_square_grids_only(llava_dir):
    """The same tile features laid out both ways: a 2 x 2 grid gives one sequence, a 1 x 2 grid (an image
    wider than tall, as 8 x 8 pixels pick here) another, and the pinned one unpadded with int()."""
    from cirbench.contracts.encoder import load_encoder
    from cirbench.encoders.llava_next import pack

    pinpoints = [[28, 56], [56, 28], [56, 56]]
    torch.manual_seed(0)
    newline = torch.randn(32)
    for size, tiles in (((40, 40), 5), ((30, 70), 3), ((8, 8), 3), ((70, 30), 3)):
        features = torch.randn(tiles, 4, 32)
        a, b = (pack(features, size, pinpoints, 28, newline, t) for t in ("fixed", "pinned"))
        assert (a.shape == b.shape and torch.equal(a, b)) == (size == (40, 40)), size
    with pytest.raises(Exception, match="tiles=pinned\\|4.45\\|fixed"):
        load_encoder(f"llava-next:{llava_dir}?tiles=diagonal")


def official_e5v(model, processor, encoder, gallery_prompt, query_prompt, gallery, queries):
    """retrieval.py cir(): gallery embeddings under the gallery prompt; each query's embedding(s), summed
    (FashionIQ's two orders) and normalised; scores = queries @ gallery. transformers' forward with each
    image's token count (batch size 1, as the official run)."""
    def emb(prompt, image):
        return forward_as(encoder, model, processor, prompt, image)[0]

    g = torch.stack([torch.nn.functional.normalize(emb(gallery_prompt, im), dim=-1) for im in gallery])
    q = torch.stack([torch.nn.functional.normalize(sum(emb(query_prompt.replace("<sent>", s), im) for s in sents), dim=-1)
                     for im, sents in queries])
    return q @ g.T


def _outcomes(tmp_path, method="e5-v"):
    from cirbench.storage import results
    from helpers import result_file

    return results.load_outcomes(results.read(result_file(tmp_path / "r", method)))


@pytest.mark.parametrize("tiles", ["fixed", "pinned"])
def test_e5v_on_fashioniq_as_the_official_code(tmp_path, llava_dir, hf, monkeypatch, tiles):
    """Both caption orders, each stripped of '.?, ' and joined with ', ', summed before normalising; the
    category's gallery prompt ('toptee' asked as 'shirt')."""
    import json

    import cirbench
    from cirbench.methods.e5_v import FASHION_GALLERY, FASHION_QUERY, chat
    from cirbench.protocol.images import load_image

    root = F.fashioniq(tmp_path / "fiq")
    rows = json.loads((root / "captions" / "cap.dress.val.json").read_text())
    rows[0]["captions"] = ["is red.", "has long sleeves?"]
    (root / "captions" / "cap.dress.val.json").write_text(json.dumps(rows))
    ev = cirbench.evaluate(methods=["e5-v"], datasets=["fashioniq:dress"], data={"fashioniq": str(root)},
                           options=[f"e5-v.model={llava_dir}", f"e5-v.tiles={tiles}"], workers=0,
                           cache_dir=tmp_path / "cache", results_dir=tmp_path / "r")
    (cell,) = ev.cells
    assert cell.status == "computed", cell.error
    out = _outcomes(tmp_path)
    from cirbench.contracts.encoder import load_encoder
    from cirbench.contracts.registry import datasets

    encoder = load_encoder(f"llava-next:{llava_dir}?tiles={tiles}")
    if tiles == "pinned":
        pin_441(monkeypatch)
    split = datasets.get("fashioniq")(root).load("dress")
    gallery = [load_image(split.images[g], keep_mode=False) for g in split.gallery]
    queries = []
    for q in split.queries:
        c = [x.strip(".?, ") for x in q.fields["captions"][:2]]
        queries.append((load_image(split.images[q.reference], keep_mode=False), [", ".join(c), ", ".join(reversed(c))]))
    scores = official_e5v(*hf, encoder, chat(FASHION_GALLERY.format(c="dress")),
                          chat(FASHION_QUERY.format(c="dress")), gallery, queries)
    want = torch.argsort(scores, dim=1, descending=True, stable=True)
    got = out.views["gallery"][0]
    width = min(got.shape[1], want.shape[1])
    assert got[:, :width].tolist() == want[:, :width].tolist()
    assert cell.record.method.config["tiles"] == tiles and cell.record.method.setting == ("" if tiles == "pinned"
                                                                                          else "tiles=fixed")


def test_e5v_on_cirr_removes_the_reference_and_uses_the_raw_caption(tmp_path, llava_dir, hf):
    import cirbench
    from cirbench.contracts.encoder import load_encoder
    from cirbench.contracts.registry import datasets
    from cirbench.methods.e5_v import GENERIC_GALLERY, GENERIC_QUERY, chat
    from cirbench.protocol.images import load_image

    root = F.cirr(tmp_path / "cirr")
    ev = cirbench.evaluate(methods=["e5-v"], datasets=["cirr:val"], data={"cirr": str(root)},
                           options=[f"e5-v.model={llava_dir}", "e5-v.tiles=fixed"], workers=0,
                           cache_dir=tmp_path / "cache", results_dir=tmp_path / "r")
    (cell,) = ev.cells
    assert cell.status == "computed", cell.error
    encoder = load_encoder(f"llava-next:{llava_dir}?tiles=fixed")
    split = datasets.get("cirr")(root).load("val")
    gallery = [load_image(split.images[g], keep_mode=False) for g in split.gallery]
    queries = [(load_image(split.images[q.reference], keep_mode=False), [q.text]) for q in split.queries]
    scores = official_e5v(*hf, encoder, chat(GENERIC_GALLERY), chat(GENERIC_QUERY), gallery, queries)
    for i, q in enumerate(split.queries):  # retrieval.py: scores[i][reference] = -1
        scores[i, split.gallery.index(q.reference)] = -1
    want = torch.argsort(scores, dim=1, descending=True, stable=True)[:, :-1]  # the reference ranks last
    got = _outcomes(tmp_path).views["gallery"][0]
    width = min(got.shape[1], want.shape[1])
    assert got[:, :width].tolist() == want[:, :width].tolist()
    assert "CIRR's prompts" in cell.record.method.config["path"]


@pytest.mark.parametrize("category", ["dress", "toptee"])
def test_e5v_fashioniq_query_vectors_are_the_official_ones(llava_dir, hf, category):
    """The query vector itself (rankings of a tiny gallery can hide a wrong embedding): both orders of the
    stripped captions joined with ', ', their last-token states summed, normalised; toptee asked as 'shirt'."""
    from dataclasses import replace

    from cirbench.contracts.encoder import load_encoder
    from cirbench.methods.e5_v import FASHION_QUERY, chat
    from helpers import method_for, query_batch

    encoder = load_encoder(f"llava-next:{llava_dir}?tiles=fixed")
    method = method_for("e5-v", encoder, dataset="fashioniq", options={"tiles": "fixed"})
    method.split = replace(method.split, split=category)
    method.prepare(method.split)
    captions = [["is red.", "has long sleeves?"], ["is blue", " is darker, "]]
    images = IMAGES[:2]
    batch = query_batch(method, torch.zeros(2, encoder.embed_dim), ["x", "y"],
                        fields=[{"captions": c} for c in captions])
    batch.load_pixels = lambda refs: images
    batch.reference_images = images
    got = method.encode_queries(batch)
    name = "shirt" if category == "toptee" else "dress"
    prompt = chat(FASHION_QUERY.format(c=name))
    model, processor = hf
    for row, image, c in zip(got, images, captions):
        parts = [x.strip(".?, ") for x in c]
        summed = sum(forward_as(encoder, model, processor, prompt.replace("<sent>", s), image)[0]
                     for s in (", ".join(parts), ", ".join(reversed(parts))))
        assert torch.allclose(row, torch.nn.functional.normalize(summed, dim=-1), atol=1e-5)
    assert method.config()["gallery_prompt"] == chat(f"<image>\n Describe this {name} in one word based on its style:")


def test_pinned_tiles_are_cut_as_transformers_4_41_2_cut_them():
    """Worked by hand on this config (28-pixel tiles, pinpoints 28x56, 56x28, 56x56): a 20 x 61 image
    (height x width) fits 28 x 56 best; resized to width 56 and height ceil(20 x 56/61) = 19, padded by
    (28 - 19) // 2 = 4 rows on each side -- 27 rows, one short of the grid --, cut into two 27 x 28
    tiles; the base image squashed to 28 x 28. Each tile's short side is then resized to 28 (27 x 28 ->
    28 x int(28 x 28/27) = 29) and centre-cropped (left (29 - 28) // 2 = 0). A flat image keeps its colour
    through PIL's resizes: the tile's padding rows are exactly black before the stretch."""
    import numpy as np

    from cirbench.encoders.llava_next import pixels_441, tiles_441

    config = {"image_grid_pinpoints": [[28, 56], [56, 28], [56, 56]], "size": {"shortest_edge": 28},
              "crop_size": {"height": 28, "width": 28}, "resample": 3, "do_resize": True, "do_center_crop": True,
              "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
              "image_std": [0.5, 0.5, 0.5]}
    image = Image.new("RGB", (61, 20), (200, 100, 50))
    tiles, size = tiles_441(image, config)
    assert size == (20, 61) and [t.shape for t in tiles] == [(28, 28, 3), (27, 28, 3), (27, 28, 3)]
    assert (tiles[1][:4] == 0).all() and (tiles[1][4:23] == [200, 100, 50]).all() and (tiles[1][23:] == 0).all()
    assert (tiles[0] == [200, 100, 50]).all()
    pixels, _ = pixels_441(image, config)
    assert pixels.shape == (3, 3, 28, 28) and pixels.dtype == torch.float32
    want = ((np.float64(200) * (1 / 255)).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)
    assert float(pixels[0, 0, 0, 0]) == float(want)
