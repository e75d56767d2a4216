"""Protocol details pinned by hand-worked values (issue 23). Each test says why its inputs were chosen:
the inputs make the difference between the right rule and the likely wrong one visible (non-square
images, asymmetric captions, skewed samples, 40 tied items, raw features of different norms).
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from cirbench.analysis import stats
from cirbench.storage import results
from helpers import RecordingProgress, method_for, pic2word_request, query_batch, split_view

normalize = torch.nn.functional.normalize


# -- TargetPad ---------------------------------------------------------------------------------------

def test_targetpad_pads_the_short_side_with_black_by_hand():
    """40 x 10 (ratio 4): the long side 40 / 1.25 = 32 is the padded short side, so 11 black rows above
    and below ((32 - 10) / 2), none beside. The tall 10 x 40 pads columns instead; 12 x 10 (ratio 1.2 <
    1.25) is left alone. White pixels in the image make a white pad distinguishable from the content."""
    from cirbench.protocol.transforms import TargetPad

    wide = Image.new("RGB", (40, 10), (255, 255, 255))
    out = np.asarray(TargetPad(1.25)(wide))
    assert out.shape == (32, 40, 3)
    assert (out[:11] == 0).all() and (out[-11:] == 0).all() and (out[11:21] == 255).all()
    tall = np.asarray(TargetPad(1.25)(Image.new("RGB", (10, 40), (255, 255, 255))))
    assert tall.shape == (40, 32, 3) and (tall[:, :11] == 0).all() and (tall[:, 11:21] == 255).all()
    assert TargetPad(1.25)(Image.new("RGB", (12, 10))).size == (12, 10)
    # a ratio between 1.25 and 2 (30 x 20: 1.5, whose whole part 1 is below 1.25): 30 / 1.25 = 24, two
    # black rows above and below
    mild = np.asarray(TargetPad(1.25)(Image.new("RGB", (30, 20), (255, 255, 255))))
    assert mild.shape == (24, 30, 3) and (mild[:2] == 0).all() and (mild[-2:] == 0).all() and (mild[2:22] == 255).all()


def test_targetpad_transform_gives_the_padded_images_pixels(tiny_encoder):
    """Through the tiny CLIP's transform (32 px): the padded 40 x 32 image is resized to 40 x 32 and
    centre-cropped to 32 x 32, so the top 11 rows of the tensor are the pad's value ((0 - .5) / .5 = -1)
    and the middle rows the image's white (+1); CLIP's own transform would crop the white image's centre
    and give +1 everywhere."""
    from cirbench.protocol.transforms import build

    image = Image.new("RGB", (40, 10), (255, 255, 255))
    padded = build(tiny_encoder.base_preprocess, "targetpad")(image)
    assert torch.allclose(padded[:, :10], torch.tensor(-1.0), atol=1e-3)
    assert torch.allclose(padded[:, 13:19], torch.tensor(1.0), atol=1e-3)
    assert torch.allclose(build(tiny_encoder.base_preprocess, "clip")(image), torch.tensor(1.0), atol=1e-3)


# -- SEARLE, Pic2Word and LinCIR queries -----------------------------------------------------------------

def word_token_ckpt(path, encoder, word: str, kind: str):
    """A released-format checkpoint whose network outputs the input embedding of ``word`` whatever the
    image (last layer zero, its bias the embedding): injecting it must equal writing the word."""
    emb = encoder.word_embedding(word)
    d, w = encoder.embed_dim, encoder.token_width
    if kind == "pic2word":
        state = {"layers.0.0.weight": torch.randn(8, d), "layers.0.0.bias": torch.zeros(8),
                 "layers.1.0.weight": torch.randn(8, 8), "layers.1.0.bias": torch.zeros(8),
                 "fc_out.weight": torch.zeros(w, 8), "fc_out.bias": emb}
        torch.save({"state_dict_img2text": state, "epoch": 1}, path)
    else:
        state = {"layers.0.weight": torch.randn(4 * d, d), "layers.0.bias": torch.zeros(4 * d),
                 "layers.3.weight": torch.randn(4 * d, 4 * d), "layers.3.bias": torch.zeros(4 * d),
                 "layers.6.weight": torch.zeros(w, 4 * d), "layers.6.bias": emb}
        torch.save({"Phi": state}, path)
    return path


def test_pic2word_injects_at_its_templates_slot_only(tmp_path, tiny_encoder):
    """The caption holds a standalone `*` of its own: Pic2Word's slot is the template's, so the query is
    the feature of "a photo of dog , a * shaped cookie" (the caption's * stays text), not "... a dog shaped
    cookie"."""
    ckpt = word_token_ckpt(tmp_path / "p.pt", tiny_encoder, "dog", "pic2word")
    method = method_for("pic2word", tiny_encoder, ckpt)
    out = method.encode_queries(query_batch(method, torch.randn(1, tiny_encoder.embed_dim), ["a * shaped cookie"]))
    right = tiny_encoder.encode_texts(["a photo of dog , a * shaped cookie"])
    wrong = tiny_encoder.encode_texts(["a photo of dog , a dog shaped cookie"])
    assert torch.allclose(normalize(out), normalize(right), atol=1e-5)
    assert not torch.allclose(normalize(out), normalize(wrong), atol=1e-3)


def test_lincir_injects_at_every_dollar_by_default_and_at_the_slot_as_an_option(tmp_path, tiny_encoder):
    """LinCIR's encode_with_pseudo_tokens_HF replaces every token 259 ($): "costs $ 5" gets the image
    there too; --option lincir.inject=slot injects at the template's $ only."""
    ckpt = word_token_ckpt(tmp_path / "phi.pt", tiny_encoder, "dog", "phi")
    features = torch.randn(1, tiny_encoder.embed_dim)
    every = method_for("lincir", tiny_encoder, ckpt)
    slot = method_for("lincir", tiny_encoder, ckpt, options={"inject": "slot"})
    got_every = every.encode_queries(query_batch(every, features, ["costs $ 5"]))
    got_slot = slot.encode_queries(query_batch(slot, features, ["costs $ 5"]))
    assert torch.allclose(normalize(got_every), normalize(tiny_encoder.encode_texts(["a photo of dog that costs dog 5"])),
                          atol=1e-5)
    assert torch.allclose(normalize(got_slot), normalize(tiny_encoder.encode_texts(["a photo of dog that costs $ 5"])),
                          atol=1e-5)


def test_searle_averages_the_two_caption_orders(tmp_path, tiny_encoder):
    """SEARLE's validate.py on FashionIQ: each caption stripped of '.?, ', both orders encoded, the two
    normalised features averaged (then normalised). Asymmetric captions make the orders differ; the
    expected value is computed here from the two orders' features."""
    from test_checkpoints import searle_ckpt

    state = searle_ckpt(tmp_path / "phi.pt", tiny_encoder.embed_dim, tiny_encoder.token_width)
    method = method_for("searle", tiny_encoder, tmp_path / "phi.pt", dataset="fashioniq")
    ref = torch.randn(1, tiny_encoder.embed_dim)
    fields = [{"captions": ["is red.", "has long sleeves ,"]}]
    out = method.encode_queries(query_batch(method, ref, ["unused"], fields))
    gelu = torch.nn.functional.gelu
    h = gelu(ref @ state["layers.0.weight"].T + state["layers.0.bias"])
    h = gelu(h @ state["layers.3.weight"].T + state["layers.3.bias"])
    token = h @ state["layers.6.weight"].T + state["layers.6.bias"]
    one = tiny_encoder.encode_texts_with_pseudo(["a photo of $ that is red and has long sleeves"], token, "$")
    two = tiny_encoder.encode_texts_with_pseudo(["a photo of $ that has long sleeves and is red"], token, "$")
    expected = normalize((normalize(one) + normalize(two)) / 2)
    assert torch.allclose(normalize(out), expected, atol=1e-5)
    assert not torch.allclose(expected, normalize(one), atol=1e-3)  # the orders do differ


# -- the Combiner and image+text -------------------------------------------------------------------------

def test_the_combiners_dynamic_scalar_weighs_text_by_lambda(tmp_path, tiny_encoder):
    """CLIP4Cir: out = normalise(output_layer(...) + lambda text + (1 - lambda) image). With the output
    layer zeroed and the dynamic scalar's last bias at logit(0.8), lambda = 0.8: image e1 and text e2
    give normalise(0.2 e1 + 0.8 e2) (swapped lambdas would give 0.8 e1 + 0.2 e2). Checked through a
    checkpoint in the released layout and the method."""
    from cirbench.methods.combiner import build_combiner

    d = tiny_encoder.embed_dim
    net = build_combiner(d, 8, 16)
    state = {k: torch.zeros_like(v) if "output_layer" in k or "dynamic_scalar.3.weight" in k else v
             for k, v in net.state_dict().items()}
    state["dynamic_scalar.3.bias"] = torch.tensor([float(np.log(0.8 / 0.2))])
    torch.save({"epoch": 1, "Combiner": state}, tmp_path / "c.pt")
    method = method_for("combiner", tiny_encoder, tmp_path / "c.pt")
    image, text = torch.zeros(1, d), torch.zeros(1, d)
    image[0, 0], text[0, 1] = 1.0, 1.0
    method.ctx.text_features = lambda texts: text
    out = method.encode_queries(query_batch(method, image, ["x"]))
    expected = torch.zeros(1, d)
    expected[0, 0], expected[0, 1] = 0.2, 0.8
    assert torch.allclose(out, normalize(expected), atol=1e-5)


def test_the_combiner_joins_the_first_two_of_a_querys_captions(tmp_path, tiny_encoder):
    """validate.py: "{c1.strip('.?, ').capitalize()} and {c2.strip('.?, ')}". A query with a third
    caption (a plugin dataset's) joins its first two; one without captions gets the split's text; an
    order forced to the official one puts c2 first."""
    from cirbench.methods.combiner import build_combiner

    torch.save({"Combiner": build_combiner(tiny_encoder.embed_dim, 8, 16).state_dict()}, tmp_path / "c.pt")
    fields = [{"captions": ["is red. ", "has sleeves?", "is long"]}, {}]
    for order, first in ((None, "Is red and has sleeves"), ("official", "Has sleeves and is red")):
        method = method_for("combiner", tiny_encoder, tmp_path / "c.pt", caption_order=order)
        batch = query_batch(method, torch.zeros(2, tiny_encoder.embed_dim), ["joined", "plain text"], fields)
        assert method.texts(batch) == [first, "plain text"], order


def combiner_triplets(encoder, n=6, scale_targets=5.0):
    """n triplets over 2n images whose raw features have norms far from 1 (targets about 5 times the
    references'), and texts of different lengths, so that swapping reference and target, reading the
    wrong text or leaving the targets unnormalised each moves the trained weights."""
    from cirbench.contracts.method import TrainRequest

    g = torch.Generator().manual_seed(3)
    feats = {f"r{i}": torch.randn(encoder.embed_dim, generator=g) for i in range(n)}
    feats.update({f"t{i}": scale_targets * torch.randn(encoder.embed_dim, generator=g) for i in range(n)})
    triplets = [(f"r{i}", "a" + " longer" * (i % 7) + f" dress {i}", f"t{i}") for i in range(n)]

    def request(out, **fields):
        return TrainRequest(encoder=encoder, out=out, triplets=triplets, train_dataset="mydata",
                            image_features=lambda names: torch.stack([feats[n] for n in names]), **fields)

    return feats, triplets, request


@pytest.mark.parametrize("n, epochs, batch", [(6, 2, 2), (258, 1, 129)])
def test_combiner_training_is_clip4cirs_step(tmp_path, tiny_encoder, n, epochs, batch):
    """Against the steps written out here: the Combiner's output (dropout on, from torch's seed) against
    the normalised target features, in-batch cross-entropy at logit scale 100 (CLIP4Cir's
    Combiner.logit_scale), Adam at the given lr, each epoch's order from a generator seeded with the
    seed. Six triplets: two epochs of three batches of two, so progress counts 2 x 3 steps (neither
    2 + 3 nor 2 + 2). 258 triplets: their texts are encoded in chunks of 256, and each must be read once."""
    import torch.nn.functional as F

    from cirbench.methods.combiner import Combiner, build_combiner
    from cirbench.training.loop import batches

    feats, triplets, request = combiner_triplets(tiny_encoder, n)
    progress = RecordingProgress()
    Combiner.train(request(tmp_path / "c.pt", epochs=epochs, batch_size=batch, lr=1e-3, seed=4, progress=progress,
                           options={"projection_dim": "8", "hidden_dim": "16"}))
    refs = torch.stack([feats[r] for r, _, _ in triplets])
    targets = F.normalize(torch.stack([feats[t] for _, _, t in triplets]), dim=-1)
    texts = tiny_encoder.encode_texts([t for _, t, _ in triplets])
    torch.manual_seed(4)
    net = build_combiner(tiny_encoder.embed_dim, 8, 16)
    optim = torch.optim.Adam(net.parameters(), lr=1e-3)
    order = torch.Generator().manual_seed(4)
    for _ in range(epochs):
        for idx in batches(n, batch, order):
            loss = F.cross_entropy(100.0 * net(refs[idx], texts[idx]) @ targets[idx].T, torch.arange(batch))
            optim.zero_grad()
            loss.backward()
            optim.step()
    ckpt = torch.load(tmp_path / "c.pt", weights_only=False)
    assert ckpt["epoch"] == epochs and ckpt["cirbench"]["train_dataset"] == "mydata"
    got = ckpt["Combiner"]
    assert set(got) == set(net.state_dict())
    for key, value in net.state_dict().items():
        assert torch.allclose(got[key], value, atol=1e-6), key
    steps = epochs * (n // batch)
    assert progress.tasks == [("train combiner", steps)] and len(progress.texts) == steps and progress.advanced == steps
    assert progress.texts[0].startswith(f"epoch 1/{epochs} loss ")
    assert progress.texts[-1].startswith(f"epoch {epochs}/{epochs} loss ")
    assert ckpt["cirbench"]["final_loss"] == pytest.approx(loss.item(), abs=1e-5)


def test_combiner_training_draws_one_of_clip4cirs_four_joins_each_step(tmp_path, tiny_encoder):
    """FashionIQ: CLIP4Cir's combiner_train.py trains each step on one of four texts per triplet
    (utils.generate_randomized_fiq_caption: u < .25 "C1 and c2", < .5 "C2 and c1", < .75 "C1", else
    "C2", each caption stripped of '.?, ' and capitalised). Written out here with the draws taken from
    the seeded generator after each epoch's order; captions with stray punctuation and two orders that
    differ; a triplet without two captions keeps its query text. -o caption_mix=0 trains on the dataset's
    query text instead (the steps of the test above)."""
    import torch.nn.functional as F

    from cirbench.methods.combiner import Combiner, build_combiner
    from cirbench.training.loop import batches

    feats, triplets, request = combiner_triplets(tiny_encoder, 8)
    captions = [(f"is shade {i}.", f" has {i} buttons?") for i in range(8)]
    joins = [[f"Is shade {i} and has {i} buttons", f"Has {i} buttons and is shade {i}", f"Is shade {i}",
              f"Has {i} buttons"] for i in range(8)]
    # triplet 3 has one caption only: its own query text stands in for all four draws (not the target's
    # name, not three copies, which would cut every triplet's fourth join)
    captions[3], joins[3] = ("is shade 3",), [triplets[3][1]] * 4
    options = {"projection_dim": "8", "hidden_dim": "16"}

    def trained(name, **more):
        req = request(tmp_path / name, epochs=2, batch_size=4, lr=1e-3, seed=5, options={**options, **more})
        req.triplet_captions = captions
        Combiner.train(req)
        return torch.load(tmp_path / name, weights_only=False)

    refs = torch.stack([feats[r] for r, _, _ in triplets])
    targets = F.normalize(torch.stack([feats[t] for _, _, t in triplets]), dim=-1)

    def replay(texts_of):
        torch.manual_seed(5)
        net = build_combiner(tiny_encoder.embed_dim, 8, 16)
        optim = torch.optim.Adam(net.parameters(), lr=1e-3)
        order = torch.Generator().manual_seed(5)
        for _ in range(2):
            for idx in batches(8, 4, order):
                texts = tiny_encoder.encode_texts(texts_of(idx, order))
                loss = F.cross_entropy(100.0 * net(refs[idx], texts) @ targets[idx].T, torch.arange(4))
                optim.zero_grad()
                loss.backward()
                optim.step()
        return net.state_dict()

    def drawn(idx, order):
        u = torch.rand(len(idx), generator=order).tolist()
        return [joins[i][0 if x < .25 else 1 if x < .5 else 2 if x < .75 else 3] for i, x in zip(idx.tolist(), u)]

    for ckpt, expected in ((trained("mix.pt"), replay(drawn)),
                           (trained("plain.pt", caption_mix="0"),
                            replay(lambda idx, _: [triplets[i][1] for i in idx.tolist()]))):
        for key, value in expected.items():
            assert torch.allclose(ckpt["Combiner"][key], value, atol=1e-6), key
    assert "four joins" in torch.load(tmp_path / "mix.pt", weights_only=False)["cirbench"]["texts"]
    assert torch.load(tmp_path / "plain.pt", weights_only=False)["cirbench"]["texts"] == "the dataset's query text"


def test_combiner_training_defaults_are_clip4cirs_command(tmp_path, tiny_encoder, monkeypatch):
    """Without settings, CLIP4Cir's README training command: 300 epochs (also combiner_train.py's
    --num-epochs default), batches of 4096, Adam lr 2e-5, projection 2560 and hidden 5120 (the code's
    640 * 4 and 640 * 8). The batches are recorded and none is trained (a 2560-wide net stays cheap);
    the run's own auto-training scales the sizes with the encoder (4x and 8x the feature width)."""
    from cirbench.methods import combiner as module

    sizes, lrs, built = [], [], []
    real_build, real_adam = module.build_combiner, torch.optim.Adam
    monkeypatch.setattr(module, "batches", lambda n, size, gen: sizes.append(size) or iter(()))
    monkeypatch.setattr(module, "build_combiner", lambda *a: built.append(a) or real_build(a[0], 4, 4))
    monkeypatch.setattr(torch.optim, "Adam", lambda params, lr: lrs.append(lr) or real_adam(params, lr=lr))
    _, _, request = combiner_triplets(tiny_encoder)
    module.Combiner.train(request(tmp_path / "c.pt"))
    assert sizes == [4096] * 300 and lrs == [2e-5] and built == [(tiny_encoder.embed_dim, 2560, 5120)]
    assert torch.load(tmp_path / "c.pt", weights_only=False)["epoch"] == 300
    d = tiny_encoder.embed_dim
    assert module.Combiner.training_defaults(tiny_encoder) == {"projection_dim": 4 * d, "hidden_dim": 8 * d}


def test_genecis_image_plus_text_averages_the_raw_features():
    """GeneCIS's FeatureComb: normalise(0.5 image + 0.5 text) of the raw features. Raw image (10, 0) and
    text (0, 1): (5, .5) -> (.995, .0995); averaging normalised features would give (.7071, .7071)."""
    from cirbench.contracts.method import MethodContext, resolve_options
    from cirbench.contracts.registry import methods

    cls = methods.get("image+text")
    raw, normalised = [0.99504, 0.09950], [0.70711, 0.70711]
    # (the split's own baseline, --option image+text.combine, expected): the option overrides the split
    for info, chosen, expected in (({"image_text": "raw"}, "split", raw), ({}, "split", normalised),
                                   ({"image_text": "raw"}, "normalized", normalised), ({}, "raw", raw)):
        ctx = MethodContext(encoder=None, text_features=lambda texts: torch.tensor([[0.0, 1.0]]),
                            options=resolve_options("image+text", cls.options, {"combine": chosen}))
        method = cls(ctx)
        method.split = split_view()
        method.split.info = info
        method.prepare(method.split)
        out = method.encode_queries(query_batch(method, torch.tensor([[10.0, 0.0]]), ["x"]))
        assert out[0].tolist() == pytest.approx(expected, abs=1e-4), (info, chosen)


# -- ties ----------------------------------------------------------------------------------------------

def test_forty_tied_items_keep_gallery_order_everywhere():
    """torch's CPU sort happens to keep the order of ties up to 16 items; 40 tied items (over chunks of
    16) show whether the stable rule is really applied: the ranking must be 0, 1, ..., 39 after the one
    better item, in rank_vectors, rank_scores, order_by_scores and the engine's re-ranking sort."""
    from cirbench.protocol.scoring import order_by_scores, rank_scores, rank_vectors

    gallery = normalize(torch.tensor([[1.0, 0.0]] * 40 + [[0.0, 1.0]]))  # 40 ties, then the best item
    query = normalize(torch.tensor([[0.3, 1.0]]))
    expected = [40] + list(range(40))
    _s, top, _r = rank_vectors(query, gallery, 41, chunk_size=16)
    assert top[0].tolist() == expected
    scores = query @ gallery.T
    assert rank_scores(scores, 41)[1][0].tolist() == expected
    members = torch.arange(41)[None]
    assert order_by_scores(scores, members)[0].tolist() == expected
    flat = torch.zeros(1, 40)
    assert torch.sort(flat, dim=1, descending=True, stable=True).indices[0].tolist() == list(range(40))


def test_a_reranker_that_ties_everything_keeps_the_ranking(tmp_path):
    """The engine sorts re-ranking scores stably: a re-ranker returning 40 equal scores changes nothing."""
    import json

    import cirbench
    import colour_encoder
    from cirbench.contracts.method import Method

    colour_encoder.register()

    class Flat(Method):
        name = "flat-rerank"
        rerank_depth = 40

        def compose(self, reference_features, texts):
            return reference_features

        def rerank(self, batch, candidates, scores):
            return torch.zeros_like(scores)

    root = tmp_path / "ds"
    (root / "gallery").mkdir(parents=True)
    for i in range(44):  # shades of red: distinct scores, so any reordering shows
        Image.new("RGB", (4, 4), (255, 4 * i, 4 * i)).save(root / "gallery" / f"{i:02d}.png")
    (root / "val.jsonl").write_text(json.dumps({"reference": "gallery/00.png", "text": "x",
                                                "target": "gallery/03.png"}) + "\n")
    kw = dict(datasets=[str(root)], encoder="colour-test", workers=0, cache_dir=tmp_path / "c")
    plain = cirbench.evaluate(methods=["image-only"], results_dir=tmp_path / "a", **kw).results[0]
    flat = cirbench.evaluate(methods=[Flat], results_dir=tmp_path / "b", **kw).results[0]
    top = lambda r: results.load_outcomes(r).views["gallery"][0][0, :40].tolist()  # noqa: E731
    assert top(flat) == top(plain) and len(set(top(plain))) == 40


# -- bootstrap intervals --------------------------------------------------------------------------------

def draws(n_queries: int, n: int, seed: int, key: str) -> np.ndarray:
    """The resampling the report documents: n x Q indices from numpy's default_rng seeded by
    (seed, crc32 of the split's key), written here independently of cirbench.stats."""
    return np.random.default_rng([seed, zlib.crc32(key.encode())]).integers(0, n_queries, size=(n, n_queries))


# per-query values like AP@K: two large, 28 small and all different -- the bootstrap distribution of the
# mean is skewed and continuous, so the 90% and 95% intervals, one-sided tails and a tenth of the draws
# all give other numbers
SKEWED = np.concatenate([[0.9, 0.8], np.random.default_rng(7).uniform(0.0, 0.05, 28)])


def test_interval_is_the_two_sided_95_percent_percentile_interval_of_1000_draws():
    means = 100 * SKEWED[draws(30, 1000, 0, "ds:val")].mean(axis=1)
    expected = (np.percentile(means, 2.5), np.percentile(means, 97.5))
    got = stats.interval(SKEWED, "percent", key="ds:val")
    assert got == pytest.approx(expected)
    for wrong in ((np.percentile(means, 5), np.percentile(means, 95)), (np.percentile(means, 0), np.percentile(means, 95)),
                  (np.percentile(means[:100], 2.5), np.percentile(means[:100], 97.5))):
        assert got != pytest.approx(wrong)


def test_the_split_average_resamples_each_split_with_its_own_key():
    """Two splits of the same size: with one key for both, their resamples would be the same indices
    (perfectly correlated), which widens the interval of the average."""
    a, b = SKEWED, SKEWED[::-1].copy()
    total = (100 * a[draws(30, 1000, 0, "ds:a")].mean(1) + 100 * b[draws(30, 1000, 0, "ds:b")].mean(1)) / 2
    expected = (np.percentile(total, 2.5), np.percentile(total, 97.5))
    got = stats.average_interval([(a, "percent", "ds:a"), (b, "percent", "ds:b")])
    assert got == pytest.approx(expected)
    shared = (100 * a[draws(30, 1000, 0, "ds:a")].mean(1) + 100 * b[draws(30, 1000, 0, "ds:a")].mean(1)) / 2
    assert got != pytest.approx((np.percentile(shared, 2.5), np.percentile(shared, 97.5)))


def test_paired_test_by_hand():
    """a hits 6 of 30, b 3 of 30 (on other queries): the paired draws on shared indices give the interval
    and the two-sided p = 2 (min(#<=0, #>=0) + 1) / (n + 1)."""
    a = np.zeros(30)
    a[:6] = 1
    b = np.zeros(30)
    b[10:13] = 1
    idx = draws(30, 1000, 0, "ds:val")
    diff = 100 * a[idx].mean(1) - 100 * b[idx].mean(1)
    result = stats.paired(a, b, "percent", key="ds:val")
    assert result.difference == pytest.approx(10.0)
    assert (result.low, result.high) == pytest.approx((np.percentile(diff, 2.5), np.percentile(diff, 97.5)))
    assert result.p == pytest.approx(min(1.0, 2 * (min((diff <= 0).sum(), (diff >= 0).sum()) + 1) / 1001))


def test_prompt_errors_say_what_the_template_holds_and_what_the_query_has():
    """A template naming a field the query lacks lists the fields it has (text, then the string fields in
    order, not the non-string ones); a pseudo-word template says whether the word is missing or repeated."""
    from cirbench.errors import UsageError
    from cirbench.protocol.prompts import fill, split_pseudo

    # field names on both sides of "text" in sort order are fields, not the query text
    assert fill("{c1} {text} {width}", "x", {"c1": "red", "width": "wide"}) == "red x wide"
    with pytest.raises(UsageError, match=r"names \{c3\}, which this query does not have \(it has: text, c1, c2\)"):
        fill("{c3} and {text}", "x", {"c1": "red", "n": 3, "c2": "long"})
    with pytest.raises(UsageError, match=r"holds no standalone pseudo-word '\*'"):
        split_pseudo("a photo of *, {text}", "*")
    with pytest.raises(UsageError, match=r"holds 2 standalone pseudo-word '\*'"):
        split_pseudo("* and * , {text}", "*")


def test_transform_names_are_a_known_base_and_known_modifiers():
    """An unknown base alone (no modifier) is refused as surely as an unknown modifier: build() would
    otherwise fall through to the encoder's own transform under a name that says something else."""
    from cirbench.errors import UsageError
    from cirbench.protocol.transforms import parse

    assert parse("targetpad+fp16") == ("targetpad", ("fp16",)) and parse("hf-clip") == ("hf-clip", ())
    for bad in ("squash", "CLIP", "clip+fp32", "squash+fp16"):
        with pytest.raises(UsageError, match=rf"unknown image transform '{re.escape(bad)}'; choose one of clip, "
                                             r"targetpad, hf-clip \(optionally with \+fp16\)"):
            parse(bad)


def test_the_squash_variant_leaves_a_transform_without_resize_and_crop_alone():
    """Pic2Word's COCO squash replaces CLIP's resize + centre crop; a transform lacking either has nothing
    to replace and is returned as it is."""
    from torchvision import transforms as T

    from cirbench.protocol.transforms import squash_variant

    only_crop = T.Compose([T.CenterCrop(8), T.ToTensor()])
    only_resize = T.Compose([T.Resize(8), T.ToTensor()])
    assert squash_variant(only_crop) is only_crop
    assert squash_variant(only_resize) is only_resize
    squashed = squash_variant(T.Compose([T.Resize(8), T.CenterCrop(8), T.ToTensor()]))
    assert isinstance(squashed.transforms[0], T.Resize) and squashed.transforms[0].size == (8, 8)
    assert len(squashed.transforms) == 2


def test_rescale_is_totensors_range_and_rgb_conversion_is_recognised_by_name():
    """Rescale's default is ToTensor's 1/255 (a multiplication, not a floor division); a step counts as an
    RGB conversion by type or by a name with both "convert" and "rgb" -- torchvision's ConvertImageDtype
    is not one (the hf-clip transform would drop it)."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms as T

    from cirbench.protocol.transforms import Rescale, ToRGB, is_rgb_conversion

    image = Image.fromarray(np.array([[[0, 17, 255], [128, 3, 64]]], dtype=np.uint8))
    torch.testing.assert_close(Rescale()(image), T.ToTensor()(image))  # x * (1/255) vs x / 255: last bit

    def _convert_to_rgb(image):
        return image.convert("RGB")

    def rgb_jitter(image):
        return image

    assert is_rgb_conversion(ToRGB()) and is_rgb_conversion(_convert_to_rgb)
    assert not is_rgb_conversion(T.ConvertImageDtype(torch.float32)) and not is_rgb_conversion(rgb_jitter)


def test_lincirs_encoder_view_without_options_is_the_official_one():
    """A caller that passes no options (a plugin, the API with a bare class) gets LinCIR's official
    preprocessing, as with the resolved default options."""
    from cirbench.contracts.method import resolve_options
    from cirbench.contracts.registry import methods

    cls = methods.get("lincir")
    official = cls.encoder_view(resolve_options("lincir", cls.options, {}))
    assert cls.encoder_view({}) == official
    assert (official.transform, official.references, official.weights) == ("hf-clip", "hf-clip+fp16", "fp16")
    assert cls.encoder_view({"official_preprocessing": False}).transform == "clip"


def pic2word():
    """Pic2Word's method class and its module (what its training calls is patched there)."""
    import importlib

    from cirbench.contracts.registry import methods

    cls = methods.get("pic2word")
    return cls, importlib.import_module(cls.__module__)


def ten_features(encoder):
    """Ten random image features: one batch of 10, or two of 5."""
    return torch.randn(10, encoder.embed_dim, generator=torch.Generator().manual_seed(0))


def quick(**fields):
    """Short training settings: batches of 5, a 16-wide mapping, warm-up over one step."""
    return {"epochs": 1, "batch_size": 5, "lr": 1e-3, "options": {"middle_dim": "16", "warmup": "1"}, **fields}


def test_pic2word_training_on_the_cpu_runs_without_autocast(tmp_path, tiny_encoder, monkeypatch):
    """Mixed precision (bf16 autocast) is for CUDA only: a CPU run must not enter torch.autocast at all."""
    cls, _ = pic2word()
    entered = []
    real = torch.autocast
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: entered.append(a) or real(*a, **k))
    cls.train(pic2word_request(tiny_encoder, tmp_path / "p.pt", ten_features(tiny_encoder), **quick()))
    assert (tmp_path / "p.pt").is_file() and entered == []


def test_pic2word_training_records_its_epochs_and_uses_the_official_optimizer(tmp_path, tiny_encoder, monkeypatch):
    """Pic2Word's AdamW (betas 0.9, 0.98, eps 1e-6, as its ViT recipe); each epoch's batch order comes
    from a generator seeded seed * 100003 + epoch, as is its dropout (what makes an interrupted epoch
    resumable), and the checkpoint says how many epochs it holds. Seed 2 and 2 epochs: the generators
    are 200006, 200007."""
    cls, module = pic2word()
    seeds, torch_seeds = [], []
    real, real_seed = module.batches, torch.manual_seed
    monkeypatch.setattr(module, "batches", lambda n, size, gen: seeds.append(gen.initial_seed()) or real(n, size, gen))
    monkeypatch.setattr(torch, "manual_seed", lambda s: torch_seeds.append(s) or real_seed(s))
    cls.train(pic2word_request(tiny_encoder, tmp_path / "p.pt", ten_features(tiny_encoder), **quick(epochs=2, seed=2)))
    assert seeds == [200006, 200007] and torch_seeds == [2, 200006, 200007]  # the model's init, then dropout
    ckpt = torch.load(tmp_path / "p.pt", weights_only=False)
    assert ckpt["epoch"] == 2 and ckpt["cirbench"]["epochs"] == 2
    groups = ckpt["optimizer"]["param_groups"]
    assert {(tuple(g["betas"]), g["eps"]) for g in groups} == {((0.9, 0.98), 1e-6)}


def test_pic2word_training_defaults_are_the_papers_recipe(tmp_path, tiny_encoder, monkeypatch):
    """Without settings: 30 epochs of batches of 128 per process, a 512-wide mapping, warm-up over a
    tenth of the steps capped at 10,000, progress shown by rank 0. Ten features make one step an epoch
    (30 steps, warm-up 3); with 5,000 steps an epoch (150,000 in all) the warm-up is the cap."""
    cls, module = pic2word()
    sizes, schedules, steps = [], [], []
    real_batches, real_schedule = module.batches, module.warmup_cosine
    monkeypatch.setattr(module, "batches", lambda n, size, gen: sizes.append(size) or real_batches(n, size, gen))

    def schedule(opt, lr, warm, total):
        schedules.append((warm, total, lr))
        set_lr = real_schedule(opt, lr, warm, total)
        return lambda step: steps.append(step) or set_lr(step)

    monkeypatch.setattr(module, "warmup_cosine", schedule)
    progress = RecordingProgress()
    features = ten_features(tiny_encoder)
    cls.train(pic2word_request(tiny_encoder, tmp_path / "p.pt", features, progress=progress))
    ckpt = torch.load(tmp_path / "p.pt", weights_only=False)
    assert ckpt["epoch"] == 30 and set(sizes) == {128} and len(sizes) == 30
    assert ckpt["state_dict_img2text"]["fc_out.weight"].shape == (tiny_encoder.token_width, 512)
    # the official IM2TEXT's default depth, n_layer = 2: two Linear-Dropout-ReLU blocks, then fc_out
    assert set(ckpt["state_dict_img2text"]) == {"layers.0.0.weight", "layers.0.0.bias", "layers.1.0.weight",
                                                "layers.1.0.bias", "fc_out.weight", "fc_out.bias"}
    assert schedules == [(3, 30, 1e-4)] and progress.tasks == [("train pic2word", 30)]
    assert isinstance(schedules[0][0], int)  # warm-up counts whole steps
    assert progress.texts[-1].startswith("epoch 30/30 loss ") and steps == list(range(30))
    decays = sorted(g["weight_decay"] for g in ckpt["optimizer"]["param_groups"])
    assert decays == [0.0, 0.1]  # biases (and norms) are not decayed
    monkeypatch.setattr(module, "steps_per_epoch", lambda n, size: 5000)
    cls.train(pic2word_request(tiny_encoder, tmp_path / "q.pt", features))
    assert schedules[-1] == (10000, 150000, 1e-4)
    # 3 steps an epoch, 90 in all: a tenth is 9 (a ninth would be 10); no step is trained for these
    monkeypatch.setattr(module, "steps_per_epoch", lambda n, size: 3)
    monkeypatch.setattr(module, "batches", lambda n, size, gen: iter(()))
    cls.train(pic2word_request(tiny_encoder, tmp_path / "r.pt", features))
    assert schedules[-1] == (9, 90, 1e-4)


@pytest.mark.filterwarnings("ignore:CUDA is not available")  # the autocast object is built, not entered
def test_pic2word_trains_in_mixed_precision_on_a_gpu_unless_told_not_to():
    # the official --precision amp default; the CPU (every test here) always runs in full precision
    import contextlib

    _, module = pic2word()
    amp = module.mixed_precision("cuda:0", {})
    assert isinstance(amp, torch.autocast) and amp.fast_dtype == torch.bfloat16 and amp.device == "cuda"
    for device, opts in (("cuda", {"amp": "0"}), ("cpu", {}), (torch.device("cpu"), {"amp": "1"})):
        assert isinstance(module.mixed_precision(device, opts), contextlib.nullcontext), (device, opts)


def test_pic2word_warms_up_for_at_least_one_step(tmp_path, tiny_encoder, monkeypatch):
    # a tenth of the steps, at least one: 10 images in batches of 5 for 2 epochs is 4 steps (4 // 10 = 0)
    cls, module = pic2word()
    schedules = []
    real = module.warmup_cosine
    monkeypatch.setattr(module, "warmup_cosine", lambda opt, lr, warm, total: schedules.append((warm, total))
                        or real(opt, lr, warm, total))
    cls.train(pic2word_request(tiny_encoder, tmp_path / "p.pt", ten_features(tiny_encoder),
                               **quick(epochs=2, options={"middle_dim": "16"})))
    assert schedules == [(1, 4)]


def test_pic2word_refuses_to_resume_a_mapping_of_another_width(tmp_path, tiny_encoder):
    from cirbench.errors import UsageError

    cls, _ = pic2word()
    features = ten_features(tiny_encoder)

    def request(middle, resume):
        return pic2word_request(tiny_encoder, tmp_path / "p.pt", features, resume=resume,
                                **quick(options={"middle_dim": str(middle), "warmup": "1"}))

    cls.train(request(16, False))
    cls.train(request(16, True))  # the same encoder and width: resumed
    for trained, asked in ((16, 8), (8, 16)):  # the same encoder, a narrower or a wider width
        cls.train(request(trained, False))
        with pytest.raises(UsageError, match="cannot resume"):
            cls.train(request(asked, True))
    # another encoder (its key sorting before or after this one's): refused
    for key in ("0" * 8, "z" * 8):
        cls.train(request(16, False))
        ckpt = torch.load(tmp_path / "p.pt", weights_only=False)
        ckpt["cirbench"]["encoder_key"] = key
        torch.save(ckpt, tmp_path / "p.pt")
        with pytest.raises(UsageError, match="cannot resume: it was trained for another encoder"):
            cls.train(request(16, True))


def test_pic2word_resumes_to_the_uninterrupted_weights_and_restarts_without_resume(tmp_path, tiny_encoder):
    """Two epochs of two steps (10 images, batches of 5, warm-up over one step of four). Stopped after
    epoch 1 and resumed, the mapping must equal the one trained straight through (the schedule goes on
    at step 2, the progress counts from it to 4); without --resume an existing file is trained afresh
    (seed 7 over a seed-3 checkpoint: the seed-7 weights, not a resumed seed-3 run)."""
    cls, _ = pic2word()
    features = ten_features(tiny_encoder)

    def train(name, epochs, seed=3, resume=False, progress=None):
        cls.train(pic2word_request(tiny_encoder, tmp_path / name, features, resume=resume, progress=progress,
                                   **quick(epochs=epochs, seed=seed)))
        return torch.load(tmp_path / name, weights_only=False)

    straight = train("straight.pt", 2)
    train("resumed.pt", 1)
    progress = RecordingProgress()
    resumed = train("resumed.pt", 2, resume=True, progress=progress)
    assert resumed["epoch"] == 2
    for key, value in straight["state_dict_img2text"].items():
        assert torch.allclose(resumed["state_dict_img2text"][key], value, atol=1e-6), key
    assert progress.tasks == [("train pic2word", 4)] and progress.advanced == 4 and len(progress.texts) == 3
    assert progress.texts[1:] == [t for t in progress.texts[1:] if t.startswith("epoch 2/2 loss ")]
    fresh, again = train("fresh.pt", 1, seed=7), train("resumed.pt", 1, seed=7)
    assert again["cirbench"]["seed"] == 7
    for key, value in fresh["state_dict_img2text"].items():
        assert torch.equal(again["state_dict_img2text"][key], value), key


def test_a_pic2word_mapping_for_wider_features_is_refused(tmp_path, tiny_encoder):
    """A checkpoint whose mapping reads wider image features than the encoder gives is another
    backbone's: refused with the widths named (not a shape error deep inside torch)."""
    from cirbench.errors import DataError

    _, module = pic2word()
    d, w = tiny_encoder.embed_dim, tiny_encoder.token_width
    for in_dim, out_dim in ((d + 8, w), (d - 8, w), (d, w + 8), (d, w - 8)):
        net = module.build_mapping(in_dim, 16, out_dim)
        torch.save({"state_dict_img2text": net.state_dict()}, tmp_path / "p.pt")
        with pytest.raises(DataError, match=f"takes {in_dim}-d image features to {out_dim}-d token embeddings"):
            module.load_mapping(tmp_path / "p.pt", tiny_encoder)


def test_a_bare_checkpoint_belongs_to_the_one_method_that_takes_weights():
    from pathlib import Path

    from cirbench.api import checkpoint_map
    from cirbench.contracts.registry import methods

    for name in ("pic2word", "combiner", "searle", "lincir"):
        run = [(n, methods.get(n)) for n in ("image-only", name, "text-only")]
        assert checkpoint_map("w.pt", run) == {name: Path("w.pt")}, name


def test_pic2word_under_torchrun_takes_its_slice_of_a_global_batch(tmp_path, tiny_encoder, monkeypatch):
    """With 2 processes of batch 5, a global batch is 10 images and rank 1 trains on the second half of
    each (the two-process loss and gradient themselves are compared in tests/test_training.py)."""
    from cirbench.util import distributed

    cls, module = pic2word()
    sizes, seen = [], []
    real_batches, real_loss = module.batches, module.contrastive_loss
    monkeypatch.setattr(distributed, "world", lambda: (1, 2))
    monkeypatch.setattr(module, "batches", lambda n, size, gen: sizes.append(size) or real_batches(n, size, gen))
    monkeypatch.setattr(module, "contrastive_loss", lambda net, enc, f, scale: seen.append(f.clone()) or
                        real_loss(net, enc, f, scale))
    features = ten_features(tiny_encoder)
    progress = RecordingProgress()
    cls.train(pic2word_request(tiny_encoder, tmp_path / "p.pt", features, progress=progress, **quick()))
    assert sizes == [10] and len(seen) == 1 and seen[0].shape[0] == 5
    assert progress.tasks == []  # only rank 0 shows progress
    order = real_batches(10, 10, torch.Generator().manual_seed(0 * 100003 + 0))
    first = next(iter(order))
    assert torch.equal(seen[0], features[first.tensor_split(2)[1]])
