"""Each method gets its own paper's text and image transform, on the paths users take.

FashionIQ (the official codes, read side by side):
- Pic2Word's evaluate_fashion: captions unstripped, "a photo of * , {c2} and {c1}"; its text-only and
  image+text baselines encode that same prompt, literal * included.
- SEARLE's and LinCIR's validate.py: captions stripped of '.?, ', "a photo of $ that {c1} and {c2}" and
  "... {c2} and {c1}", the normalised features averaged.
- CLIP4Cir's validate.py: "{c1.strip('.?, ').capitalize()} and {c2.strip('.?, ')}".
Transforms: SEARLE and CLIP4Cir TargetPad 1.25, LinCIR Hugging Face's CLIPImageProcessor (hf-clip), the
others CLIP's resize and centre crop.
"""

import json

import pytest
import torch
from typer.testing import CliRunner

import real_fixtures as F
from cirbench.cli import app
from cirbench.encoders.openclip import OpenClipEncoder
from test_checkpoints import pic2word_ckpt, searle_ckpt

C1, C2 = "is green.", "has short sleeves ,"


@pytest.fixture
def recorded(monkeypatch):
    """Every text the encoder is asked to encode, by call kind."""
    calls = {"plain": [], "pseudo": []}
    plain, pseudo = OpenClipEncoder.encode_texts, OpenClipEncoder.encode_texts_with_pseudo

    def encode_texts(self, texts):
        calls["plain"] += list(texts)
        return plain(self, texts)

    def encode_texts_with_pseudo(self, prompts, embeddings, token="*", prefixes=None, every_occurrence=False):
        calls["pseudo"] += [(token, p) for p in prompts]
        return pseudo(self, prompts, embeddings, token, prefixes, every_occurrence)

    monkeypatch.setattr(OpenClipEncoder, "encode_texts", encode_texts)
    monkeypatch.setattr(OpenClipEncoder, "encode_texts_with_pseudo", encode_texts_with_pseudo)
    return calls


def fashioniq_with_punctuation(root):
    F.fashioniq(root)
    rows = json.loads((root / "captions" / "cap.dress.val.json").read_text())
    rows[0]["captions"] = [C1, C2]
    (root / "captions" / "cap.dress.val.json").write_text(json.dumps(rows))
    return root


def weights(tmp_path, encoder):
    from cirbench.methods.combiner import build_combiner

    pic2word_ckpt(tmp_path / "p2w.pt", encoder.embed_dim, encoder.token_width)
    torch.save({"epoch": 1, "Combiner": build_combiner(encoder.embed_dim, 8, 16).state_dict()}, tmp_path / "c.pt")
    searle_ckpt(tmp_path / "phi.pt", encoder.embed_dim, encoder.token_width)
    return ["--checkpoint", f"pic2word={tmp_path / 'p2w.pt'}", "--checkpoint", f"combiner={tmp_path / 'c.pt'}",
            "--checkpoint", f"searle={tmp_path / 'phi.pt'}", "--checkpoint", f"lincir={tmp_path / 'phi.pt'}"]


def run(tmp_path, tiny_dir, *extra):
    args = ["run", "-m", "all", "--dataset", "fashioniq:dress", "--data", f"fashioniq={tmp_path / 'fiq'}",
            "--encoder", f"local-dir:{tiny_dir}", "--workers", "0", "--json", "--quiet", "--overwrite",
            "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "cache"), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return {r["method"]["name"]: r for r in json.loads(result.stdout)["results"]}


def test_fashioniq_each_method_gets_its_own_papers_text_and_transform(tmp_path, tiny_dir, tiny_encoder, recorded):
    fashioniq_with_punctuation(tmp_path / "fiq")
    got = run(tmp_path, tiny_dir, *weights(tmp_path, tiny_encoder))
    pic2word = f"a photo of * , {C2} and {C1}"  # unstripped, the second caption first
    assert ("*", pic2word) in recorded["pseudo"]
    assert pic2word in recorded["plain"]  # text-only and image+text: the same prompt, literal * included
    assert ("$", "a photo of $ that is green and has short sleeves") in recorded["pseudo"]  # SEARLE, LinCIR
    assert ("$", "a photo of $ that has short sleeves and is green") in recorded["pseudo"]
    assert "Is green and has short sleeves" in recorded["plain"]  # CLIP4Cir
    assert f"{C1} and {C2}" in recorded["plain"]  # slerp and weicom: the relative captions as written
    assert f"{C2} and {C1}".strip(" .") not in [t for _, t in recorded["pseudo"]]
    transforms = {name: r["method"]["transform"] for name, r in got.items()}
    assert transforms == {"image-only": "clip", "text-only": "clip", "image+text": "clip", "product": "clip",
                          "pic2word": "clip", "searle": "targetpad", "combiner": "targetpad", "lincir": "hf-clip",
                          "slerp": "clip", "weicom": "clip"}
    assert got["searle"]["encoder"]["identity"]["preprocess"].startswith("Compose(     TargetPad(1.25)")
    # LinCIR's code: Hugging Face's crop, weights rounded through fp16, the reference's pixels cast to half
    assert got["lincir"]["method"]["reference_transform"] == "hf-clip+fp16"
    assert got["lincir"]["method"]["weights"] == "fp16" and got["lincir"]["encoder"]["identity"]["weights_rounding"] == "fp16"
    assert "FloorCenterCrop" in got["lincir"]["encoder"]["identity"]["preprocess"]
    assert got["pic2word"]["method"]["config"]["prompt"] == "a photo of * , {text}"
    assert got["text-only"]["method"]["config"]["prompt"] == "a photo of * , {text}"
    assert "both orders" in got["searle"]["method"]["config"]["caption_rule"]
    assert "capitalize" in got["combiner"]["method"]["config"]["caption_rule"]
    # and the report says it, per method
    assert CliRunner().invoke(app, ["report", "--results-dir", str(tmp_path / "r"), "--out",
                                    str(tmp_path / "out")]).exit_code == 0
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| fashioniq | searle | targetpad | `a photo of $ that {text}` (e.g. `a photo of $ that " in md
    assert "| fashioniq | text-only | clip | `a photo of * , {text}` (e.g. `a photo of * , " in md


def test_explicit_overrides_still_work_and_are_recorded(tmp_path, tiny_dir, tiny_encoder, recorded):
    fashioniq_with_punctuation(tmp_path / "fiq")
    got = run(tmp_path, tiny_dir, *weights(tmp_path, tiny_encoder), "--set", "caption_order=natural",
              "--transform", "clip", "--prompt", "text={text}")
    assert ("*", f"a photo of * , {C1} and {C2}") in recorded["pseudo"]
    assert ("$", "a photo of $ that has short sleeves and is green") not in recorded["pseudo"]  # one order only
    assert f"{C1} and {C2}" in recorded["plain"]  # the text baselines, with their template overridden
    assert {r["method"]["transform"] for r in got.values()} == {"clip"}
    assert {r["method"]["reference_transform"] for r in got.values()} == {"clip"}
    assert got["searle"]["method"]["config"]["caption_rule"].endswith("order forced: natural")
    assert got["text-only"]["dataset"]["prompts"]["text"] == "{text}"
    assert got["text-only"]["dataset"]["info"]["caption_order"] == "natural"
