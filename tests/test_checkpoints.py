"""Checkpoints in the official key layouts load; wrong keys or shapes give a clear message."""

import pytest
import torch

from cirbench.errors import DataError
from helpers import method_for, query_batch


def pic2word_ckpt(path, embed_dim, token_width, middle=16, prefix="module."):
    torch.manual_seed(1)
    state = {
        f"{prefix}layers.0.0.weight": torch.randn(middle, embed_dim), f"{prefix}layers.0.0.bias": torch.randn(middle),
        f"{prefix}layers.1.0.weight": torch.randn(middle, middle), f"{prefix}layers.1.0.bias": torch.randn(middle),
        f"{prefix}fc_out.weight": torch.randn(token_width, middle), f"{prefix}fc_out.bias": torch.randn(token_width),
    }
    torch.save({"epoch": 30, "name": "pic2word", "state_dict": {}, "state_dict_img2text": state,
                "optimizer": {}}, path)
    return state


def test_official_pic2word_checkpoint_with_module_prefix(tmp_path, tiny_encoder):
    state = pic2word_ckpt(tmp_path / "p.pt", tiny_encoder.embed_dim, tiny_encoder.token_width)
    method = method_for("pic2word", tiny_encoder, tmp_path / "p.pt")
    assert torch.equal(method.net.fc_out.weight, state["module.fc_out.weight"])
    ref = torch.randn(2, tiny_encoder.embed_dim)
    out = method.encode_queries(query_batch(method, ref, ["red", "blue"]))
    # the same as running the released network by hand and injecting its output
    w = {k.removeprefix("module."): v for k, v in state.items()}
    h = torch.relu(ref @ w["layers.0.0.weight"].T + w["layers.0.0.bias"])
    h = torch.relu(h @ w["layers.1.0.weight"].T + w["layers.1.0.bias"])
    token = h @ w["fc_out.weight"].T + w["fc_out.bias"]
    expected = tiny_encoder.encode_texts_with_pseudo(["a photo of * , red", "a photo of * , blue"], token)
    assert torch.allclose(out, expected, atol=1e-5)


def test_pic2word_checkpoint_for_another_backbone_is_refused(tmp_path, tiny_encoder):
    pic2word_ckpt(tmp_path / "big.pt", 768, 768)
    with pytest.raises(DataError, match="768-d image features.*another backbone"):
        method_for("pic2word", tiny_encoder, tmp_path / "big.pt")


def test_pic2word_checkpoint_with_wrong_keys_is_refused(tmp_path, tiny_encoder):
    torch.save({"state_dict_img2text": {"fc.weight": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(DataError, match="not a Pic2Word checkpoint"):
        method_for("pic2word", tiny_encoder, tmp_path / "bad.pt")
    torch.save({"Phi": {}}, tmp_path / "phi.pt")
    with pytest.raises(DataError, match="state_dict_img2text"):
        method_for("pic2word", tiny_encoder, tmp_path / "phi.pt")


def test_pic2word_prompt_without_star_fails_before_any_work(tmp_path, tiny_encoder):
    from cirbench.errors import UsageError

    pic2word_ckpt(tmp_path / "p.pt", tiny_encoder.embed_dim, tiny_encoder.token_width)
    with pytest.raises(UsageError, match="pseudo-word"):
        method_for("pic2word", tiny_encoder, tmp_path / "p.pt", prompts={"pseudo": "a photo of {text}"})


def test_official_combiner_checkpoint_sizes_from_weights(tmp_path, tiny_encoder):
    from cirbench.methods.combiner import build_combiner

    d = tiny_encoder.embed_dim
    net = build_combiner(d, 24, 40)
    torch.save({"epoch": 3, "Combiner": net.state_dict()}, tmp_path / "c.pt")
    method = method_for("combiner", tiny_encoder, tmp_path / "c.pt")
    assert method.net.text_projection_layer.out_features == 24
    assert method.net.combiner_layer.out_features == 40
    assert method.config()["supervised"] is True
    ref = torch.randn(3, d)
    text = tiny_encoder.encode_texts(["a", "b", "c"])
    net.eval()
    out = method.encode_queries(query_batch(method, ref, ["a", "b", "c"]))
    assert torch.allclose(out, net(ref, text), atol=1e-6)


def test_a_bare_combiner_head_loads_and_another_methods_file_is_refused_by_section(tmp_path, tiny_encoder):
    """GeneCIS releases the Combiner head as the state dict itself, saved from DataParallel ("module."
    keys): it loads as {'Combiner': ...}. A file that is neither (a Pic2Word checkpoint) is refused
    for lacking the 'Combiner' section, not read as a head with missing keys."""
    from cirbench.errors import DataError
    from cirbench.methods.combiner import build_combiner

    net = build_combiner(tiny_encoder.embed_dim, 8, 16)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "head.pt")
    method = method_for("combiner", tiny_encoder, tmp_path / "head.pt")
    assert method.net.combiner_layer.out_features == 16
    for key, value in net.state_dict().items():
        assert torch.equal(method.net.state_dict()[key], value), key
    pic2word_ckpt(tmp_path / "p.pt", tiny_encoder.embed_dim, tiny_encoder.token_width)
    with pytest.raises(DataError, match=r"p\.pt: expected a 'Combiner' state dict; found keys"):
        method_for("combiner", tiny_encoder, tmp_path / "p.pt")
    # another backbone's head, narrower or wider: refused by its width before any query meets it
    d = tiny_encoder.embed_dim
    for width in (d - 8, d + 8):
        torch.save({"Combiner": build_combiner(width, 8, 16).state_dict()}, tmp_path / "w.pt")
        with pytest.raises(DataError, match=f"this Combiner takes {width}-d features but encoder"):
            method_for("combiner", tiny_encoder, tmp_path / "w.pt")


def test_missing_checkpoint_says_how_to_train(tmp_path, tiny_encoder):
    from cirbench.errors import MissingCheckpointError

    with pytest.raises(MissingCheckpointError, match="cirbench train combiner"):
        method_for("combiner", tiny_encoder, store=tmp_path)
    with pytest.raises(MissingCheckpointError, match="cirbench train pic2word"):
        method_for("pic2word", tiny_encoder, store=tmp_path)
    with pytest.raises(MissingCheckpointError, match="is a folder"):
        method_for("pic2word", tiny_encoder, checkpoint=tmp_path)


def searle_ckpt(path, embed_dim, token_width, prefix=""):
    torch.manual_seed(2)
    h = 4 * embed_dim
    state = {f"{prefix}layers.0.weight": torch.randn(h, embed_dim), f"{prefix}layers.0.bias": torch.randn(h),
             f"{prefix}layers.3.weight": torch.randn(h, h) / h ** 0.5, f"{prefix}layers.3.bias": torch.randn(h),
             f"{prefix}layers.6.weight": torch.randn(token_width, h) / h ** 0.5,
             f"{prefix}layers.6.bias": torch.randn(token_width)}
    torch.save({"Phi": state}, path)
    return state


def test_released_searle_phi_and_its_prompt(tmp_path, tiny_encoder):
    from cirbench.methods._shared import searle_prompt

    state = searle_ckpt(tmp_path / "phi.pt", tiny_encoder.embed_dim, tiny_encoder.token_width)
    method = method_for("searle", tiny_encoder, tmp_path / "phi.pt")
    assert method.config()["prompt"] == "a photo of $ that {text}"
    ref = torch.randn(2, tiny_encoder.embed_dim)
    gelu = torch.nn.functional.gelu
    h = gelu(ref @ state["layers.0.weight"].T + state["layers.0.bias"])
    h = gelu(h @ state["layers.3.weight"].T + state["layers.3.bias"])
    token = h @ state["layers.6.weight"].T + state["layers.6.bias"]
    expected = tiny_encoder.encode_texts_with_pseudo(["a photo of $ that is red", "a photo of $ that is blue"], token,
                                                     token="$")
    out = method.encode_queries(query_batch(method, ref, ["is red", "is blue"]))
    assert torch.allclose(out, torch.nn.functional.normalize(expected, dim=-1), atol=1e-5)
    assert searle_prompt("a {text} of *") == "a {text} of $"
    # a split's own template that sorts before Pic2Word's default is still the split's (only the default
    # itself becomes SEARLE's "a photo of $ that {text}")
    assert searle_prompt("a * that {text}") == "a $ that {text}"
    # the record says where the pseudo-word goes: SEARLE's the template's slot, LinCIR's every $
    assert method.config()["injection"] == "the template's $"
    assert method_for("lincir", tiny_encoder, tmp_path / "phi.pt").config()["injection"] == "every $ of the prompt"
    assert tiny_encoder.token_id("$") == 259


def test_searle_weights_for_another_backbone_are_refused(tmp_path, tiny_encoder):
    searle_ckpt(tmp_path / "phi.pt", 768, 768, prefix="module.")
    with pytest.raises(DataError, match="768-d image features"):
        method_for("searle", tiny_encoder, tmp_path / "phi.pt")
    # one width off at a time, narrower or wider: each refused with both widths named
    d, w = tiny_encoder.embed_dim, tiny_encoder.token_width
    for in_dim, out_dim in ((d - 8, w), (d + 8, w), (d, w - 8), (d, w + 8)):
        searle_ckpt(tmp_path / "phi.pt", in_dim, out_dim)
        with pytest.raises(DataError, match=f"takes {in_dim}-d image features to {out_dim}-d token embeddings"):
            method_for("lincir", tiny_encoder, tmp_path / "phi.pt")
