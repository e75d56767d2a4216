"""Pseudo-word injection, the mechanism shared by Pic2Word, SEARLE and LinCIR."""

import pytest
import torch

from cirbench.errors import UsageError


def test_star_is_its_own_token_and_star_comma_is_not(tiny_encoder):
    from cirbench.protocol.prompts import split_pseudo

    assert tiny_encoder.token_id("*") == 265
    tokens, mask = tiny_encoder.pseudo_mask(["a photo of * , red"])
    assert mask.sum().item() == 1 and tokens[0, 4].item() == 265 and mask[0, 4]
    with pytest.raises(UsageError, match="as its own word"):
        tiny_encoder.pseudo_mask(["a photo of *, red"])
    with pytest.raises(UsageError, match="exactly once as its own word"):
        split_pseudo("a photo of *, {text}", "*")


def test_a_star_inside_a_caption_is_text_and_only_the_template_slot_is_injected(tiny_encoder):
    from cirbench.protocol.prompts import fill_pseudo

    word = tiny_encoder.word_embedding("dog")[None]
    prompt, prefix = fill_pseudo("a photo of * , {text}", "*", "a * shaped kite")
    assert prompt == "a photo of * , a * shaped kite" and prefix == "a photo of "
    injected = tiny_encoder.encode_texts_with_pseudo([prompt], word, "*", [prefix])
    assert torch.equal(injected, tiny_encoder.encode_texts(["a photo of dog , a * shaped kite"]))
    # the slot follows the template even when the caption comes first and holds a *
    prompt, prefix = fill_pseudo("{text} , a photo of *", "*", "a * here")
    injected = tiny_encoder.encode_texts_with_pseudo([prompt], word, "*", [prefix])
    assert torch.equal(injected, tiny_encoder.encode_texts(["a * here , a photo of dog"]))
    # LinCIR's habit, on request: every occurrence
    every = tiny_encoder.encode_texts_with_pseudo(["a photo of * , a * here"], word, "*", every_occurrence=True)
    assert torch.equal(every, tiny_encoder.encode_texts(["a photo of dog , a dog here"]))


def test_token_id_zero_is_a_real_token_not_padding(tiny_encoder):
    """BPE id 0 is "!" inside a word ("wow!&"); the longest prompt of a batch must keep its end token."""
    import open_clip

    prompts = ["a photo of wow!& and wow!& again", "a cat"]
    assert 0 in tiny_encoder.tokenizer.encode("wow!&")
    ours = tiny_encoder.encode_texts(prompts)
    reference = tiny_encoder.model.encode_text(open_clip.get_tokenizer("ViT-B-32")(prompts))
    assert torch.allclose(ours, reference, atol=1e-5)


def test_injecting_a_words_embedding_equals_writing_the_word(tiny_encoder):
    words = ["dog", "red", "origami"]
    words = [w for w in words if len(tiny_encoder.tokenizer.encode(w)) == 1]
    assert len(words) >= 2
    emb = torch.stack([tiny_encoder.word_embedding(w) for w in words])
    injected = tiny_encoder.encode_texts_with_pseudo([f"a photo of * , {w} style" for w in words], emb)
    written = tiny_encoder.encode_texts([f"a photo of {w} , {w} style" for w in words])
    assert torch.equal(injected, written)
    # and it is not trivially equal: a different embedding gives a different feature
    other = tiny_encoder.encode_texts_with_pseudo([f"a photo of * , {w} style" for w in words], emb.flip(0))
    assert not torch.allclose(other, written)


def test_prompt_without_pseudo_word_is_a_clear_error(tiny_encoder):
    emb = torch.zeros(1, tiny_encoder.token_width)
    with pytest.raises(UsageError, match="pseudo-word"):
        tiny_encoder.encode_texts_with_pseudo(["a photo of a cat"], emb)


def test_gradients_reach_the_injected_embedding(tiny_encoder):
    emb = torch.randn(2, tiny_encoder.token_width, requires_grad=True)
    tiny_encoder.encode_texts_with_pseudo(["a photo of *", "a photo of *"], emb).sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_identity_records_what_changes_features(tiny_encoder, tiny_dir):
    from cirbench.contracts.encoder import load_encoder

    ident = tiny_encoder.identity
    assert ident["transform"] == "clip" and ident["precision"] == "fp32"
    assert "open_clip_pytorch_model.bin" in ident["weights_sha256"]
    padded = load_encoder(f"local-dir:{tiny_dir}", transform="targetpad")
    assert padded.key != tiny_encoder.key


def test_unknown_architecture_and_missing_weights_are_usage_errors():
    from cirbench.contracts.encoder import load_encoder

    with pytest.raises(UsageError, match="unknown open_clip architecture"):
        load_encoder("ViT-Nope-99:openai")
    with pytest.raises(UsageError, match="names no weights"):
        load_encoder("ViT-B-32")


def test_offline_model_not_in_cache_is_one_clear_error(tmp_path, network_attempts):
    """With HF_HUB_OFFLINE set, a model missing from the cache fails without a single network attempt
    (no retry loop): every socket connection is recorded and must not happen."""
    from cirbench.contracts.encoder import load_encoder

    with pytest.raises(UsageError) as err:
        load_encoder("ViT-B-32:openai", cache_dir=tmp_path)
    message = str(err.value)
    assert "ViT-B-32:openai" in message and "HF_HUB_OFFLINE" in message and str(tmp_path / "models") in message
    assert network_attempts == []
    with pytest.raises(UsageError, match="hf-hub:someone/missing"):
        load_encoder("hf-hub:someone/missing", cache_dir=tmp_path)


def test_architecture_with_a_local_weights_file(tmp_path, tiny_dir):
    import json

    import open_clip

    from cirbench.contracts.encoder import load_encoder

    cfg = json.loads((tiny_dir / "open_clip_config.json").read_text())["model_cfg"]
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "cirbench-tiny-test.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfgs")
    weights = tiny_dir / "open_clip_pytorch_model.bin"
    encoder = load_encoder(f"cirbench-tiny-test:{weights}")
    assert encoder.identity["weights_sha256"] and encoder.identity["weights_file"] == str(weights.resolve())
    reference = load_encoder(f"local-dir:{tiny_dir}")
    assert torch.allclose(encoder.encode_texts(["a red dog"]), reference.encode_texts(["a red dog"]))
    with pytest.raises(UsageError, match="cannot load encoder"):
        (tmp_path / "junk.pt").write_bytes(b"junk")
        load_encoder(f"cirbench-tiny-test:{tmp_path / 'junk.pt'}")


def test_random_weights_are_marked(tmp_path):
    from cirbench.contracts.encoder import load_encoder

    import json

    import open_clip

    (tmp_path / "cfgs").mkdir()
    from helpers import TINY_CFG

    (tmp_path / "cfgs" / "cirbench-tiny-random.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(tmp_path / "cfgs")
    encoder = load_encoder("random:cirbench-tiny-random@3")
    assert encoder.identity["random_weights"] is True and "(random weights)" in encoder.label


def test_text_encoding_skips_padding_but_matches_open_clip(tiny_encoder):
    prompts = ["a", "a photo of a red dog", "a much longer prompt with many more words in it than the others"]
    tokens = tiny_encoder.tokenize(prompts)
    reference = tiny_encoder.model.encode_text(tokens)
    assert tiny_encoder._truncatable
    assert torch.allclose(tiny_encoder.encode_texts(prompts), reference, atol=1e-5)
