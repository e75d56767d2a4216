"""OpenAI weights are built with QuickGELU, as OpenAI's CLIP (and so Pic2Word, SEARLE, CLIP4Cir) runs them.

No download: a tiny architecture is registered the way open_clip declares its own (a model config
and a pretrained tag whose config says quick_gelu, as open_clip's "openai" tags do), and its
weights are put where open_clip looks for the tag's file -- a Hugging Face cache folder -- and
loaded with HF_HUB_OFFLINE=1. An ``ARCH:FILE`` with OpenAI-format weights is checked the same way.
"""

import json

import pytest
import torch
from typer.testing import CliRunner

from helpers import TINY_CFG

ARCH = "cirbench-tiny"
REPO = "cirbench-test/tiny-openai"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    import open_clip
    from open_clip import pretrained

    folder = tmp_path_factory.mktemp("configs")
    (folder / f"{ARCH}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(folder / f"{ARCH}.json")
    saved = pretrained._PRETRAINED.get(ARCH)
    pretrained._PRETRAINED[ARCH] = {"openai": pretrained._pcfg(hf_hub=f"{REPO}/", quick_gelu=True),
                                    "laionish": pretrained._pcfg(hf_hub=f"{REPO}/")}
    torch.manual_seed(3)
    state = open_clip.CLIP(**TINY_CFG).state_dict()
    yield state
    if saved is None:
        pretrained._PRETRAINED.pop(ARCH, None)


def hub_cache(cache_dir, state):
    """The weights where open_clip's hub download looks for them (cirbench's cache/models)."""
    base = cache_dir / "models" / f"models--{REPO.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    (base / "snapshots" / COMMIT).mkdir(parents=True)
    torch.save(state, base / "snapshots" / COMMIT / "open_clip_pytorch_model.bin")


def by_hand(state, quick_gelu: bool):
    import open_clip

    model = open_clip.CLIP(**TINY_CFG, quick_gelu=quick_gelu)
    model.load_state_dict(state)
    return model.eval()


def test_a_tag_whose_config_says_quick_gelu_is_built_with_it(registered, tmp_path, monkeypatch):
    from cirbench.contracts.encoder import load_encoder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_cache(tmp_path, registered)
    encoder = load_encoder(f"{ARCH}:openai", cache_dir=tmp_path)
    assert encoder.identity["quick_gelu"] is True
    assert "pretrained config" in encoder.identity["quick_gelu_reason"]
    tokens = encoder.tokenize(["a photo of a dog"])
    with torch.no_grad():
        ours = encoder.encode_texts(["a photo of a dog"])
        assert torch.allclose(ours, by_hand(registered, True).encode_text(tokens), atol=1e-5)
        assert not torch.allclose(ours, by_hand(registered, False).encode_text(tokens), atol=1e-3)
    # a tag without quick_gelu in its config keeps open_clip's default
    assert load_encoder(f"{ARCH}:laionish", cache_dir=tmp_path).identity["quick_gelu"] is False


def test_the_setting_is_in_every_result_and_the_report(registered, tmp_path, monkeypatch, mydata):
    from cirbench.cli import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_cache(tmp_path / "cache", registered)
    result = CliRunner().invoke(app, ["run", "-m", "image-only", "--dataset", str(mydata), "--encoder",
                                      f"{ARCH}:openai", "--cache-dir", str(tmp_path / "cache"), "--workers", "0",
                                      "--results-dir", str(tmp_path / "r"), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["results"][0]
    assert record["encoder"]["identity"]["quick_gelu"] is True
    CliRunner().invoke(app, ["report", "--results-dir", str(tmp_path / "r"), "--out", str(tmp_path / "out")])
    assert "QuickGELU True (open_clip's pretrained config" in (tmp_path / "out" / "results.md").read_text()


def test_an_openai_format_weights_file_is_built_with_quick_gelu(registered, tmp_path):
    from cirbench.contracts.encoder import load_encoder

    state = dict(registered)
    # OpenAI's state dicts carry these entries (input_resolution, context_length, vocab_size)
    state.update(input_resolution=torch.tensor(32), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    torch.save(state, tmp_path / "openai.pt")
    encoder = load_encoder(f"{ARCH}:{tmp_path / 'openai.pt'}")
    assert encoder.identity["quick_gelu"] is True and "OpenAI's format" in encoder.identity["quick_gelu_reason"]
    tokens = encoder.tokenize(["red"])
    with torch.no_grad():
        assert torch.allclose(encoder.encode_texts(["red"]), by_hand(registered, True).encode_text(tokens), atol=1e-5)
    # a plain open_clip state dict is not OpenAI's: open_clip's default activation
    torch.save(registered, tmp_path / "plain.pt")
    assert load_encoder(f"{ARCH}:{tmp_path / 'plain.pt'}").identity["quick_gelu"] is False


def test_real_datasets_default_to_the_seed_papers_encoder(tmp_path, monkeypatch):
    """`cirbench run --method pic2word --dataset fashioniq` needs no --encoder: ViT-L-14:openai, and
    offline without its weights one line names it and the cache it looked in."""
    import real_fixtures as F
    from cirbench.cli import app
    from cirbench.contracts.registry import datasets

    for name in ("fashioniq", "cirr", "circo", "imagenet-r", "coco"):
        assert datasets.get(name).default_encoder == "ViT-L-14:openai"
    F.fashioniq(tmp_path / "data" / "fashioniq")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["run", "--method", "pic2word", "--dataset", "fashioniq", "--data-root",
                                      str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert "\n" not in line and "'ViT-L-14:openai'" in line and "not in the local cache" in line
    assert str(tmp_path / "cache" / "models") in line


def test_local_dir_errors_do_not_talk_about_the_hub_cache(tmp_path):
    from cirbench.cli import app

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "open_clip_config.json").write_text("{}")
    (tmp_path / "ds").mkdir()
    result = CliRunner().invoke(app, ["run", "--dataset", "world-edit", "--encoder", f"local-dir:{tmp_path / 'model'}",
                                      "--cache-dir", str(tmp_path / "cache"), "--quiet", "-m", "image-only"])
    assert result.exit_code == 2 and "cannot load encoder" in result.output
    assert "looked in the local cache" not in result.output
