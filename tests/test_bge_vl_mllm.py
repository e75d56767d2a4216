"""BGE-VL-MLLM (issue 34) on a tiny random Mistral LLaVA-NeXT in the released folder layout: its query and
candidate prompts as the hub's prepare_text_input writes them, images resized to 512 x 512 in their
decoded mode, transformers 4.45.2's tiles (4.41's processor and int() unpadding, today's layout), against
transformers' own forward."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import real_fixtures as F
from hf_models import tiny_llava_next
from test_e5_v import transformers_forward, unpad_441


@pytest.fixture(scope="module")
def mllm_dir(tmp_path_factory):
    return tiny_llava_next(tmp_path_factory.mktemp("mllm") / "s1", mistral=True)


def prepare_text_input(text, q_or_c, task_instruction):
    """The hub file's prepare_text_input for an image, as written there."""
    if "q" in q_or_c:
        text_input = f"[INST] \n <instruct> {task_instruction} <query> "
        if text is not None:
            text_input = f"{text_input} {text} \n"
        text_input = f"{text_input} <image>"
        return f"{text_input} [/INST]"
    text_input = "[INST] "
    text_input = f"{text_input} <image>"
    return f"{text_input} [/INST]"


def pin_445(monkeypatch):
    """transformers 4.45.2's pack: today's grid orientation, unpad_image's size truncated with int()."""
    import transformers.models.llava_next.modeling_llava_next as modeling

    monkeypatch.setattr(modeling, "unpad_image", unpad_441)


def test_query_and_candidate_vectors_are_the_hub_codes(mllm_dir, monkeypatch):
    from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

    from cirbench.contracts.encoder import load_encoder
    from cirbench.methods.bge_vl_mllm import INSTRUCTION, BGEVLMLLM, candidate_prompt
    from helpers import method_for, query_batch

    spec = BGEVLMLLM.own_encoder({"model": str(mllm_dir)}, None)
    assert spec.endswith("?tiles=4.45&resize=512")
    encoder = load_encoder(spec)
    method = method_for("bge-vl-mllm", encoder, dataset="circo", options={"model": str(mllm_dir)})
    assert method.template == "Find a picture that also {shared_concept}, but {text}."
    # a palette image: resized in its decoded mode, then converted (as Image.open(p).resize(...).convert("RGB"))
    ref = Image.new("P", (30, 70), 3)
    ref.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 20, 40, 200] + [0] * 756)
    ref.putdata([1 + (x // 3 + y // 5) % 3 for y in range(70) for x in range(30)])  # stripes: PIL's P resize is nearest
    batch = query_batch(method, torch.zeros(1, encoder.embed_dim), ["is darker"],
                        fields=[{"shared_concept": "is red"}])
    batch.reference_images = [ref]
    batch.load_pixels = lambda refs: [encoder.preprocess(r) for r in refs]
    got = method.encode_queries(batch)[0]

    model = LlavaNextForConditionalGeneration.from_pretrained(mllm_dir, dtype=torch.float32).eval()
    processor = LlavaNextProcessor.from_pretrained(mllm_dir)
    pin_445(monkeypatch)
    image = ref.resize((512, 512)).convert("RGB")
    prompt = prepare_text_input("Find a picture that also is red, but is darker.", "query", INSTRUCTION)
    n = len(encoder.image_features(image))
    want = transformers_forward(model, processor, prompt, image, n, encoder.pixels(image))[0]
    assert torch.allclose(got, torch.nn.functional.normalize(want, dim=-1), atol=1e-5)
    assert candidate_prompt() == prepare_text_input(None, "candidate", None) == "[INST]  <image> [/INST]"
    # the exact string (this tokenizer splits on whitespace, so spacing is checked here)
    from cirbench.methods.bge_vl_mllm import query_prompt

    assert query_prompt("some text") == prepare_text_input("some text", "query", INSTRUCTION)
    assert query_prompt("T").startswith("[INST] \n <instruct> Retrieve the target") and "instructions:  <query>  T \n <image> [/INST]" in query_prompt("T")
    gallery = encoder.with_transform("prompt:" + candidate_prompt()).encode_images([image])[0]
    want = transformers_forward(model, processor, candidate_prompt(), image, n, encoder.pixels(image))[0]
    assert torch.allclose(gallery, want, atol=1e-5)


def test_bge_vl_mllm_ranks_cirr_and_records_its_text_rule(tmp_path, mllm_dir):
    import cirbench

    root = F.cirr(tmp_path / "cirr")
    ev = cirbench.evaluate(methods=["bge-vl-mllm"], datasets=["cirr:val"], data={"cirr": str(root)},
                           options=[f"bge-vl-mllm.model={mllm_dir}"], workers=0, cache_dir=tmp_path / "cache",
                           results_dir=tmp_path / "r")
    (cell,) = ev.cells
    assert cell.status == "computed", cell.error
    config = cell.record.method.config
    assert config["prompt_source"].startswith("no official template") and config["tiles"] == "4.45"
    assert cell.record.encoder.identity["resize"] == 512
